// yaml_syntax.h: where a YAML text's syntax error is, as libyaml finds it.
// libcyaml reports a syntax error at the line of the last field it had read,
// which is often the line before the fault; the configs of tl-prep and of the
// training commands ask libyaml itself instead.
#pragma once
#include <stddef.h>

// Parses text with libyaml. On a syntax error returns its 1-based line and
// writes the problem into msg[cap] ("mapping values are not allowed in this
// context", plus "while scanning a quoted scalar begun on line 3" when libyaml
// names where the broken construct began). Returns 0 when the text parses.
int tl_yaml_syntax_error(const char *text, char *msg, size_t cap);

// Looks for a key given twice in one mapping (libyaml accepts it; libcyaml
// refuses it naming the field's first line). Returns the 1-based line of the
// second one and sets *first_line and key[cap]; 0 when there is none.
int tl_yaml_duplicate_key(const char *text, int *first_line, char *key, size_t cap);
