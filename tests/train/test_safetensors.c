// safetensors writer and reader: round trip, metadata, and rejection of
// corrupt headers, truncated files and bad offsets with messages that name
// the file and the tensor.
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "tests/core/check.h"
#include "train/safetensors.h"

TestSuite(safetensors, .init = tl_test_setup, .fini = tl_test_teardown);

// A per-test path in /tmp (Criterion runs tests in separate processes).
static const char *tmp_path(const char *stem) {
  static char buf[256];
  snprintf(buf, sizeof buf, "/tmp/tl_test_st_%s_%ld.safetensors", stem, (long)getpid());
  return buf;
}

// Writes raw bytes: the length prefix for header json, then json, then data.
static void write_raw(const char *path, const char *json, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  cr_assert(f);
  uint64_t len = strlen(json);
  fwrite(&len, 8, 1, f);
  fwrite(json, 1, len, f);
  if (n) fwrite(data, 1, n, f);
  fclose(f);
}

// Opening path must fail and the message must contain every given fragment.
static void expect_open_error(const char *path, const char *frag1, const char *frag2) {
  tl_safetensors st;
  cr_assert_eq(tl_safetensors_open(&st, path), TL_ERR, "opened a bad file");
  const char *msg = tl_last_error();
  cr_assert(strstr(msg, path), "message does not name the file: %s", msg);
  cr_assert(strstr(msg, frag1), "message lacks '%s': %s", frag1, msg);
  if (frag2) cr_assert(strstr(msg, frag2), "message lacks '%s': %s", frag2, msg);
  cr_assert_eq(st.count, 0);
}

Test(safetensors, round_trip_with_metadata) {
  const char *path = tmp_path("rt");
  tl_tensor *a = tl_test_randn(1, 1, false, 3, (int64_t[]){2, 3, 5});
  int32_t ids[7] = {0, 1, -2, 65540, 5, 6, 7};
  uint16_t half[4] = {tl_f32_to_bf16(1.5f), tl_f32_to_bf16(-2.0f), 0, tl_f32_to_bf16(3.0f)};
  float scalar = 2.25f;
  tl_st_item items[4] = {
      tl_st_item_of("layer.weight", a),
      {.name = "ids", .dtype = TL_I32, .rank = 1, .shape = {7}, .data = ids},
      {.name = "half", .dtype = TL_BF16, .rank = 2, .shape = {2, 2}, .data = half},
      {.name = "loss", .dtype = TL_F32, .rank = 0, .data = &scalar},
  };
  tl_st_meta meta[2] = {{"step", "42"}, {"config", "{\"lr\": 1e-3}"}};
  cr_assert_eq(tl_safetensors_write(path, items, 4, meta, 2), TL_OK, "%s", tl_last_error());

  tl_safetensors st;
  cr_assert_eq(tl_safetensors_open(&st, path), TL_OK, "%s", tl_last_error());
  cr_assert_eq(st.count, 4);
  cr_assert_str_eq(tl_safetensors_meta(&st, "step"), "42");
  cr_assert_str_eq(tl_safetensors_meta(&st, "config"), "{\"lr\": 1e-3}");
  cr_assert_null(tl_safetensors_meta(&st, "absent"));
  cr_assert_null(tl_safetensors_find(&st, "absent"));
  // The data section starts 8-aligned, as the format's other writers pad it.
  cr_assert_eq(st.data_start % 8, 0);

  // f32 tensor: bit-exact.
  tl_tensor *b = tl_zeros(TL_F32, 3, (int64_t[]){2, 3, 5});
  cr_assert_eq(tl_safetensors_load(&st, "layer.weight", b), TL_OK, "%s", tl_last_error());
  cr_assert_eq(memcmp(a->data, b->data, 30 * sizeof(float)), 0);

  // i32, a bf16 widened to f32, and a rank-0 scalar.
  tl_tensor *ids2 = tl_zeros(TL_I32, 1, (int64_t[]){7});
  cr_assert_eq(tl_safetensors_load(&st, "ids", ids2), TL_OK, "%s", tl_last_error());
  cr_assert_eq(memcmp(ids2->data, ids, sizeof ids), 0);
  tl_tensor *h = tl_zeros(TL_F32, 2, (int64_t[]){2, 2});
  cr_assert_eq(tl_safetensors_load(&st, "half", h), TL_OK, "%s", tl_last_error());
  float want_h[4] = {1.5f, -2.0f, 0.0f, 3.0f};
  cr_assert_eq(memcmp(h->data, want_h, sizeof want_h), 0);
  const tl_st_tensor *e = tl_safetensors_find(&st, "loss");
  cr_assert_eq(e->rank, 0);
  float s2 = 0;
  cr_assert_eq(tl_safetensors_read_raw(&st, "loss", &s2, 4), TL_OK);
  cr_assert_eq(s2, scalar);
  tl_safetensors_close(&st);
  unlink(path);
}

Test(safetensors, shape_and_dtype_mismatch_named) {
  const char *path = tmp_path("mm");
  tl_tensor *a = tl_test_randn(2, 1, false, 2, (int64_t[]){4, 3});
  tl_st_item it = tl_st_item_of("enc.w", a);
  cr_assert_eq(tl_safetensors_write(path, &it, 1, NULL, 0), TL_OK);
  tl_safetensors st;
  cr_assert_eq(tl_safetensors_open(&st, path), TL_OK);
  tl_tensor *wrong = tl_zeros(TL_F32, 2, (int64_t[]){3, 4});
  cr_assert_eq(tl_safetensors_load(&st, "enc.w", wrong), TL_ERR);
  cr_assert(strstr(tl_last_error(), "enc.w") && strstr(tl_last_error(), "[4, 3]"), "%s",
            tl_last_error());
  tl_tensor *ints = tl_zeros(TL_I32, 2, (int64_t[]){4, 3});
  cr_assert_eq(tl_safetensors_load(&st, "enc.w", ints), TL_ERR);
  cr_assert_eq(tl_safetensors_load(&st, "nope", wrong), TL_ERR);
  cr_assert(strstr(tl_last_error(), "nope"), "%s", tl_last_error());
  tl_safetensors_close(&st);
  unlink(path);
}

Test(safetensors, params_by_name) {
  const char *path = tmp_path("params");
  tl_params src, dst;
  tl_params_init(&src);
  tl_params_init(&dst);
  tl_params_add(&src, "a.weight", 2, (int64_t[]){3, 7}, false);
  tl_params_add(&src, "a.bias", 1, (int64_t[]){7}, true);
  tl_params_add(&dst, "a.bias", 1, (int64_t[]){7}, true);
  tl_params_add(&dst, "a.weight", 2, (int64_t[]){3, 7}, false);
  tl_params_alloc(&src);
  tl_params_alloc(&dst);
  for (size_t i = 0; i < src.numel; i++) src.values[i] = (float)i * 0.5f;
  tl_st_item items[2];
  for (int i = 0; i < 2; i++)
    items[i] = tl_st_item_of(src.info[i].tensor->name, src.info[i].tensor);
  cr_assert_eq(tl_safetensors_write(path, items, 2, NULL, 0), TL_OK);

  tl_safetensors st;
  cr_assert_eq(tl_safetensors_open(&st, path), TL_OK);
  int n = 0;
  cr_assert_eq(tl_safetensors_load_params(&st, &dst, true, &n), TL_OK, "%s", tl_last_error());
  cr_assert_eq(n, 2);
  for (int i = 0; i < 2; i++) {
    tl_tensor *s = src.info[i].tensor, *d = tl_params_find(&dst, s->name);
    cr_assert_eq(memcmp(s->data, d->data, (size_t)tl_numel(s) * 4), 0, "%s", s->name);
  }
  tl_safetensors_close(&st);
  tl_params_free(&src);
  tl_params_free(&dst);
  unlink(path);
}

Test(safetensors, overwrite_is_atomic_rename) {
  const char *path = tmp_path("atomic");
  float x = 1, y = 2;
  tl_st_item it = {.name = "x", .dtype = TL_F32, .rank = 1, .shape = {1}, .data = &x};
  cr_assert_eq(tl_safetensors_write(path, &it, 1, NULL, 0), TL_OK);
  it.data = &y;
  cr_assert_eq(tl_safetensors_write(path, &it, 1, NULL, 0), TL_OK);
  char tmp[300];
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
  cr_assert_neq(access(tmp, F_OK), 0, "temporary file left behind");
  tl_safetensors st;
  cr_assert_eq(tl_safetensors_open(&st, path), TL_OK);
  float got = 0;
  cr_assert_eq(tl_safetensors_read_raw(&st, "x", &got, 4), TL_OK);
  cr_assert_eq(got, 2);
  tl_safetensors_close(&st);
  unlink(path);
  // A directory that does not exist: an error naming the path, no crash.
  cr_assert_eq(tl_safetensors_write("/nonexistent_dir/x.safetensors", &it, 1, NULL, 0),
               TL_ERR);
  cr_assert(strstr(tl_last_error(), "/nonexistent_dir/x.safetensors"), "%s", tl_last_error());
}

Test(safetensors, rejects_corrupt_header) {
  const char *path = tmp_path("json");
  float d[2] = {0};
  write_raw(path, "{\"w\": {\"dtype\": \"F32\", \"shape\": [2], ", d, 8);
  expect_open_error(path, "not a JSON object", NULL);
  write_raw(path, "[1, 2]", d, 8);
  expect_open_error(path, "not a JSON object", NULL);
  write_raw(path, "{\"w\": {\"dtype\": \"Q7\", \"shape\": [2], \"data_offsets\": [0, 8]}}", d,
            8);
  expect_open_error(path, "'w'", "unknown dtype");
  write_raw(path, "{\"w\": {\"dtype\": \"F32\", \"shape\": [-2], \"data_offsets\": [0, 8]}}", d,
            8);
  expect_open_error(path, "'w'", "shape");
  write_raw(path,
            "{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
            " \"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}",
            d, 8);
  expect_open_error(path, "'w'", "twice");
  write_raw(path, "{\"__metadata__\": {\"k\": 3}}", d, 0);
  expect_open_error(path, "__metadata__", NULL);
  unlink(path);
}

Test(safetensors, rejects_truncated_file) {
  const char *path = tmp_path("trunc");
  tl_tensor *a = tl_test_randn(3, 1, false, 2, (int64_t[]){8, 8});
  tl_st_item it = tl_st_item_of("big.weight", a);
  cr_assert_eq(tl_safetensors_write(path, &it, 1, NULL, 0), TL_OK);
  // Cut the last 10 bytes of data off: the tensor runs past the end.
  FILE *f = fopen(path, "rb");
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fclose(f);
  cr_assert_eq(truncate(path, size - 10), 0);
  expect_open_error(path, "'big.weight'", "truncated");
  // Cut inside the header: the length prefix promises more than there is.
  cr_assert_eq(truncate(path, 20), 0);
  expect_open_error(path, "header length", NULL);
  // Shorter than the prefix itself.
  cr_assert_eq(truncate(path, 5), 0);
  expect_open_error(path, "too short", NULL);
  unlink(path);
  expect_open_error(path, "cannot open", NULL);
}

Test(safetensors, rejects_bad_offsets) {
  const char *path = tmp_path("offs");
  float d[4] = {0};
  // Span does not match dtype x shape.
  write_raw(path, "{\"w\": {\"dtype\": \"F32\", \"shape\": [3], \"data_offsets\": [0, 8]}}", d,
            16);
  expect_open_error(path, "'w'", "needs 12");
  // begin after end.
  write_raw(path, "{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [8, 4]}}", d,
            16);
  expect_open_error(path, "'w'", "begin <= end");
  // Two tensors sharing bytes.
  write_raw(path,
            "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
            " \"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}",
            d, 16);
  expect_open_error(path, "overlap", NULL);
  // Offsets that are not integers.
  write_raw(path, "{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0.5, 4]}}",
            d, 16);
  expect_open_error(path, "'w'", "data_offsets");
  // Unsupported (but valid) dtypes open, and refuse to load with a clear reason.
  write_raw(path, "{\"pos\": {\"dtype\": \"I64\", \"shape\": [2], \"data_offsets\": [0, 16]}}",
            d, 16);
  tl_safetensors st;
  cr_assert_eq(tl_safetensors_open(&st, path), TL_OK, "%s", tl_last_error());
  tl_tensor *t = tl_zeros(TL_I32, 1, (int64_t[]){2});
  cr_assert_eq(tl_safetensors_load(&st, "pos", t), TL_ERR);
  cr_assert(strstr(tl_last_error(), "I64"), "%s", tl_last_error());
  tl_safetensors_close(&st);
  unlink(path);
}
