// test_names.c: names recorded as valid UTF-8 (data/names.h).
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "data/names.h"

static void expect_escape(const char *in, const char *want) {
  char *got = tl_utf8_escape(in);
  cr_expect_str_eq(got, want);
  cr_expect(tl_utf8_valid(got), "the escaped form is valid UTF-8: %s", got);
  free(got);
}

Test(names, valid_utf8_is_kept_invalid_bytes_escaped) {
  cr_expect(tl_utf8_valid("plain/ascii.pcap"));
  cr_expect(tl_utf8_valid("caf\xc3\xa9/\xe6\x97\xa5\xe6\x9c\xac/\xf0\x9f\x93\xa6.pcap"));
  expect_escape("caf\xc3\xa9.pcap", "caf\xc3\xa9.pcap");
  expect_escape("caf\xe9.pcap", "caf\\xe9.pcap");               // Latin-1 e-acute
  expect_escape("\xc0\xaf", "\\xc0\\xaf");                      // overlong '/'
  expect_escape("\xed\xa0\x80", "\\xed\\xa0\\x80");             // a UTF-16 surrogate
  expect_escape("\xf4\x90\x80\x80", "\\xf4\\x90\\x80\\x80");    // past U+10FFFF
  expect_escape("\xe6\x97", "\\xe6\\x97");                      // cut short at the end
  expect_escape("\xe6\x97x", "\\xe6\\x97x");                    // cut short inside
  cr_expect(!tl_utf8_valid("caf\xe9"));
  cr_expect(!tl_utf8_valid("\xc0\xaf"));
  cr_expect(!tl_utf8_valid("\x80"));
}

Test(names, hex_round_trip_and_bad_hex) {
  const char *raw = "/data/caf\xe9/x.pcap";
  char *hex = tl_hex_encode(raw);
  cr_expect_str_eq(hex, "2f646174612f636166e92f782e70636170");
  char *back = tl_hex_decode(hex);
  cr_expect_str_eq(back, raw);
  free(hex), free(back);
  cr_expect_null(tl_hex_decode("abc"));
  cr_expect_null(tl_hex_decode("zz"));
  cr_expect_null(tl_hex_decode("6100"), "a zero byte cannot be in a path");
}
