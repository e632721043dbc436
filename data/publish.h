// publish.h: moving a finished shard set from tl-prep's temporary folder into
// its output folder, so that a failure or a kill at any point leaves either
// the previous set whole, or a temporary folder from which the next run
// completes the new set.
//
// The order: every new shard and the new manifest are complete in tmp_dir
// first (the caller's job). Then the old manifest goes (a folder without one
// is visibly incomplete), old shards the new set does not replace go, the new
// shards move in (rename: atomic, no data written), and the manifest last.
#pragma once
#include "core/log.h"

// Whether name is a shard file name: "train-00003.h5", "valid-...", "test-...".
int tl_is_shard_name(const char *name);

// Publishes tmp_dir/manifest.json and the shards names[n] (all in tmp_dir, or
// already moved by an earlier interrupted publish) into out_dir. TL_ERR names
// the file that could not be moved.
tl_status tl_publish_set(const char *out_dir, const char *tmp_dir, char *const *names, int n);

// Deals with the temporary folder tmp_dir a killed run left in out_dir: when it
// holds a manifest, its set was complete and its publish is finished now;
// otherwise it is partial and deleted. Returns 1 when a set was published.
int tl_publish_recover(const char *out_dir, const char *tmp_dir);

// Deletes a folder's files, then the folder (temporary folders hold no subfolders).
void tl_remove_flat_dir(const char *dir);

// Whether a new set may be published into out_dir: refused (TL_ERR, naming the
// file) when out_dir holds a manifest.json that is not tl-prep's, or a file with
// a shard's name that its manifest does not list, since publishing would delete
// or overwrite a file tl-prep did not write. Other files are left alone.
tl_status tl_check_out_dir(const char *out_dir);
