// names.h: file and label names as tl-prep records them. File systems allow any
// bytes in a name, but the manifest (JSON) and the shards' HDF5 attributes hold
// UTF-8 text, and readers (json.load, h5py) reject anything else. So a name is
// recorded as it is when it is valid UTF-8, and otherwise with each byte that
// is not part of a valid sequence written as the four characters "\xNN".
#pragma once

// Whether s is valid UTF-8 (no overlong forms, no surrogates, at most U+10FFFF).
int tl_utf8_valid(const char *s);

// s as valid UTF-8 text, invalid bytes written "\xNN" (lower-case hex). Caller frees.
char *tl_utf8_escape(const char *s);

// The bytes of s as lower-case hex, and back; NULL from decode when hex is not
// an even count of hex digits or holds a zero byte. Caller frees.
char *tl_hex_encode(const char *s);
int tl_hex_digit(char c); // the value of one hex digit (either case), or -1
char *tl_hex_decode(const char *hex);
