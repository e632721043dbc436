// label_csv.h: the table of (capture path, label) that `tl-prep --labels` reads,
// as spreadsheets and scripts write it: CSV or TSV (a tab in the first line),
// cells quoted or not (a quoted cell may hold the separator and ""; a line break
// in a path or label is refused, as the sign of a quote left open),
// a UTF-8 byte order mark, CRLF, blank lines and '#' comment lines. A first row
// naming a "path"/"file" and a "label"/"class" column (any case) is a header;
// without one the columns are path, label. libcsv splits the cells.
#pragma once
#include "core/log.h"

// Called for each data row, with the line the row ends on. Returning TL_ERR
// stops the reading with that error.
typedef tl_status (*tl_label_row_fn)(void *ctx, const char *path, const char *label,
                                     int line);

// Reads csv_path and calls row for each row. TL_ERR names the file and line:
// no path or no label in a row, a quoted cell never closed or holding a line
// break (named by the line its row starts on), a first row whose
// path is no file and whose cells name no known column.
tl_status tl_label_csv_read(const char *csv_path, tl_label_row_fn row, void *ctx);
