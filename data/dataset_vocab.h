// dataset_vocab.h: an optional step of the dataset builder (dataset.h) for
// users of the published ET-BERT model: token ids from its vocabulary file
// instead of tl's complete native one (tokenizer.h).
#pragma once
#include "data/dataset.h"

// Makes the builder tokenize with the vocabulary file at path (published
// ET-BERT layout, see tl_tokenizer_import): bigrams the file lacks become
// [UNK], and the shards record tokenizer "etbert-published" and the file's
// vocab_size. Call it before the first add; returns TL_ERR with
// tl_last_error() set when the file cannot be read or rows were already added.
tl_status tl_dataset_builder_set_vocab(tl_dataset_builder *b, const char *path);
