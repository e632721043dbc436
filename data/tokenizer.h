// tokenizer.h: the ET-BERT byte-bigram tokenizer and its vocabularies.
//
// A packet's bytes become overlapping byte bigrams with a stride of one byte:
// bytes dc fe 18 34 give the tokens dcfe fe18 1834, so n bytes give n-1 tokens.
// A packet of 0 or 1 byte gives no token (there is no pair to form; the
// published ET-BERT code does the same). Packets are tokenized one at a time:
// no bigram spans two packets.
//
// Native vocabulary (tl's default), 65,541 ids:
//   [PAD]=0 [SEP]=1 [CLS]=2 [UNK]=3 [MASK]=4, then every bigram, id = 5 + (b0<<8 | b1).
// Its text form has one token per line, the line number (from 0) being the id;
// bigrams are four lower-case hex digits ("dcfe").
//
// Published vocabulary: the ET-BERT release ships a 60,005-line WordPiece file
// in the same one-token-per-line layout. Some bigrams are absent and exist only
// as sub-pieces ("dc", "##fe"). The importer maps every four-hex-digit entry to
// its line number and sends the absent bigrams to [UNK], so each bigram is still
// exactly one token (the published tokenizer would emit several sub-pieces).
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "core/log.h"

enum {
  TL_TOK_PAD = 0,
  TL_TOK_SEP = 1,
  TL_TOK_CLS = 2,
  TL_TOK_UNK = 3,
  TL_TOK_MASK = 4,
  TL_TOK_NUM_SPECIAL = 5,
  TL_TOK_NUM_BIGRAMS = 65536,
  TL_TOK_VOCAB_SIZE = TL_TOK_NUM_SPECIAL + TL_TOK_NUM_BIGRAMS, // 65,541
};

// Names stored in shard attributes: which vocabulary the ids refer to.
#define TL_TOKENIZER_NATIVE "etbert-bigram"
#define TL_TOKENIZER_PUBLISHED "etbert-published"

typedef struct tl_tokenizer {
  char name[32];                          // TL_TOKENIZER_NATIVE or TL_TOKENIZER_PUBLISHED
  int32_t vocab_size;                     // 65,541 native; the file's line count if imported
  int32_t n_missing;                      // bigrams that map to [UNK] (0 for native)
  int32_t bigram_id[TL_TOK_NUM_BIGRAMS];  // (b0<<8 | b1) -> token id
} tl_tokenizer;

// The native id of the bigram (b0, b1), without a table.
static inline int32_t tl_bigram_native_id(uint8_t b0, uint8_t b1) {
  return TL_TOK_NUM_SPECIAL + ((int32_t)b0 << 8 | b1);
}

// Number of tokens n bytes give: n-1, and 0 for n < 2.
static inline size_t tl_tokenize_count(size_t n) { return n < 2 ? 0 : n - 1; }

// Returns a new native tokenizer (identity table). The caller frees it with
// tl_tokenizer_free().
tl_tokenizer *tl_tokenizer_native(void);

// Reads a published-style vocabulary file (one token per line, id = line number
// from 0, the five specials first and in order). Every entry of exactly four hex
// digits becomes that bigram's id; bigrams without an entry map to [UNK] and are
// counted in n_missing (also logged). Returns NULL with tl_last_error() set when
// the file cannot be read or its first five lines are not the specials. The
// caller frees the result with tl_tokenizer_free().
tl_tokenizer *tl_tokenizer_import(const char *path);

void tl_tokenizer_free(tl_tokenizer *t); // accepts NULL

// Tokenizes one packet: writes min(tl_tokenize_count(n), cap) token ids to out
// and returns how many it wrote. t == NULL means the native vocabulary.
size_t tl_tokenize_packet(const tl_tokenizer *t, const uint8_t *bytes, size_t n, int32_t *out,
                          size_t cap);

// The text of a native token id: "[PAD]".."[MASK]" or four lower-case hex
// digits. Writes into buf (at least 8 bytes) and returns buf; "?" for ids out of
// range.
const char *tl_token_text(int32_t id, char buf[8]);

// Writes the native vocabulary to path as text, one token per line (65,541
// lines). Returns TL_ERR with tl_last_error() set when the file cannot be written.
tl_status tl_tokenizer_write_vocab(const char *path);
