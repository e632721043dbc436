// yaml_syntax.c: libyaml's own account of a syntax error (yaml_syntax.h).
#include "data/yaml_syntax.h"

#include <stdio.h>
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
