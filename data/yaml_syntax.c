// yaml_syntax.c: libyaml's own account of a syntax error (yaml_syntax.h).
#include "data/yaml_syntax.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

int tl_yaml_syntax_error(const char *text, char *msg, size_t cap) {
  yaml_parser_t parser;
  if (!yaml_parser_initialize(&parser)) return 0;
  yaml_parser_set_input_string(&parser, (const unsigned char *)text, strlen(text));
  int line = 0;
  for (int done = 0; !done;) {
    yaml_event_t ev;
    if (!yaml_parser_parse(&parser, &ev)) {
      line = (int)parser.problem_mark.line + 1;
      const char *problem = parser.problem ? parser.problem : "syntax error";
      if (parser.context && parser.context_mark.line != parser.problem_mark.line)
        snprintf(msg, cap, "%s %s begun on line %d", problem, parser.context,
                 (int)parser.context_mark.line + 1);
      else snprintf(msg, cap, "%s", problem);
      break;
    }
    done = ev.type == YAML_STREAM_END_EVENT;
    yaml_event_delete(&ev);
  }
  yaml_parser_delete(&parser);
  return line;
}

enum { MAX_DEPTH = 32, MAX_KEYS = 256 };

// The keys met so far in one open mapping, and whether a key comes next.
typedef struct {
  char *keys[MAX_KEYS];
  int lines[MAX_KEYS], n;
  int is_map, expect_key;
} open_node;

static void close_node(open_node *o) {
  for (int i = 0; i < o->n; i++) free(o->keys[i]);
  memset(o, 0, sizeof *o);
}

// Records key (at line) in mapping o; returns the line it was met on before, or 0.
static int note_key(open_node *o, const char *key, int line) {
  for (int i = 0; i < o->n; i++)
    if (!strcmp(o->keys[i], key)) return o->lines[i];
  if (o->n < MAX_KEYS) {
    o->keys[o->n] = strdup(key);
    o->lines[o->n++] = line;
  }
  return 0;
}

int tl_yaml_duplicate_key(const char *text, int *first_line, char *key, size_t cap) {
  yaml_parser_t parser;
  if (!yaml_parser_initialize(&parser)) return 0;
  yaml_parser_set_input_string(&parser, (const unsigned char *)text, strlen(text));
  open_node stack[MAX_DEPTH];
  memset(stack, 0, sizeof stack);
  int depth = 0, found = 0;
  for (int done = 0; !done && !found;) {
    yaml_event_t ev;
    if (!yaml_parser_parse(&parser, &ev)) break;
    yaml_event_type_t t = ev.type;
    open_node *top = depth > 0 ? &stack[depth - 1] : NULL;
    int at_key = top && top->is_map && top->expect_key;
    if (t == YAML_SCALAR_EVENT && at_key) {
      int line = (int)ev.start_mark.line + 1;
      int before = note_key(top, (const char *)ev.data.scalar.value, line);
      if (before) {
        *first_line = before;
        snprintf(key, cap, "%s", (const char *)ev.data.scalar.value);
        found = line;
      }
    }
    // Inside a mapping, nodes alternate key, value, key...
    int node = t == YAML_SCALAR_EVENT || t == YAML_ALIAS_EVENT ||
               t == YAML_MAPPING_START_EVENT || t == YAML_SEQUENCE_START_EVENT;
    if (node && top && top->is_map) top->expect_key = !top->expect_key;
    if ((t == YAML_MAPPING_START_EVENT || t == YAML_SEQUENCE_START_EVENT) && depth < MAX_DEPTH) {
      stack[depth].is_map = t == YAML_MAPPING_START_EVENT;
      stack[depth++].expect_key = 1;
    }
    if ((t == YAML_MAPPING_END_EVENT || t == YAML_SEQUENCE_END_EVENT) && depth > 0)
      close_node(&stack[--depth]);
    done = t == YAML_STREAM_END_EVENT;
    yaml_event_delete(&ev);
  }
  while (depth > 0) close_node(&stack[--depth]);
  yaml_parser_delete(&parser);
  return found;
}
