// row_shuffle.h: an external shuffle of spool records with bounded memory.
//
// Rows are encoded (data/spool.h) and dropped into one of 64 buckets at random
// as they arrive (kept in one temporary file, see row_shuffle.c). Draining reads one bucket at a time into
// memory, shuffles it and hands its rows out; a bucket grown past a memory
// bound is first scattered into sub-buckets the same way. Random buckets and
// a shuffle inside each give every order of the rows the same chance, while
// memory holds one bucket, whatever the input size.
#pragma once
#include <stdint.h>

#include "core/log.h"
#include "data/spool.h"

typedef struct tl_row_shuffle tl_row_shuffle;

// A bucket holding more encoded bytes than this is scattered again rather than
// read into memory: the bound on the memory a drain takes.
#define TL_ROW_SHUFFLE_BUCKET_BYTES ((int64_t)32 << 20)

// Creates the bucket file in dir (an existing private folder). `seed` and
// `stream` key the random choices, so the same rows added in the same order
// come out in the same order. NULL with tl_last_error() set on failure.
tl_row_shuffle *tl_row_shuffle_open(const char *dir, uint64_t seed, uint64_t stream);

// Adds one row: h and tokens[h->length].
tl_status tl_row_shuffle_add(tl_row_shuffle *s, const tl_spool_row *h, const int32_t *tokens);

// Called for each row while draining; a non-OK status stops the drain.
typedef tl_status (*tl_row_fn)(const tl_spool_row *h, const int32_t *tokens, void *ctx);

// Hands every added row to fn, in a uniformly random order. max_len bounds
// h->length (the tokens buffer fn receives has that many entries). Once only.
tl_status tl_row_shuffle_drain(tl_row_shuffle *s, int max_len, tl_row_fn fn, void *ctx);

// Sets the bucket bound (default TL_ROW_SHUFFLE_BUCKET_BYTES); tests lower it to
// exercise the second scatter. Call before draining.
void tl_row_shuffle_set_bucket_bytes(tl_row_shuffle *s, int64_t max_bytes);

// Deletes the bucket file and frees s. Accepts NULL.
void tl_row_shuffle_free(tl_row_shuffle *s);
