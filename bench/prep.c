// bench/prep.c: tl-prep's throughput and memory on a large capture, beside two
// references timed in the same run on the same file: a bare libpcap read loop
// (the floor) and `tshark -T fields` extracting lengths and payloads.
//
// The capture is built here, into /tmp, from every Ethernet file of the shared
// set (MANIFEST.tsv link type "ether"), ROUNDS times over; each file's packets are
// shifted in time to follow the previous file's, so the result is in time order
// and each round's flows are new flows. Every measurement runs in its own child
// process so that its peak RSS (getrusage maxrss via wait4) is its own.
//
// usage: bench-prep [--rounds N] [--results bench/RESULTS.md] [--no-tshark]
#include <pcap/pcap.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "data/capture.h"
#include "data/flow.h"
#include "data/packet.h"
#include "data/prep.h"

#ifndef TL_BENCH_PCAPS
#define TL_BENCH_PCAPS "/work/shared/data/pcaps"
#endif

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// --- building the input ---------------------------------------------------------

// Appends one capture to the dump, shifted to start 1 s after *t_end.
static long append_file(pcap_dumper_t *d, const char *path, int64_t *t_end) {
  tl_capture *c = tl_capture_open(path);
  if (!c) return 0;
  tl_capture_packet p;
  int64_t shift = 0;
  long n = 0;
  while (tl_capture_next(c, &p) == 1) {
    if (p.linktype != 1) continue;
    if (n == 0) shift = *t_end + 1000000000ll - p.ts_ns;
    int64_t ts = p.ts_ns + shift;
    if (ts > *t_end) *t_end = ts;
    struct pcap_pkthdr h = {.caplen = p.caplen, .len = p.wirelen};
    h.ts.tv_sec = ts / 1000000000ll;
    h.ts.tv_usec = (long)(ts % 1000000000ll); // nanosecond dump
    pcap_dump((u_char *)d, &h, p.data);
    n++;
  }
  tl_capture_close(c);
  return n;
}

// Writes ROUNDS copies of every Ethernet class file into out; returns packets.
static long build_input(const char *out, int rounds) {
  pcap_t *dead = pcap_open_dead_with_tstamp_precision(DLT_EN10MB, 262144,
                                                      PCAP_TSTAMP_PRECISION_NANO);
  pcap_dumper_t *d = pcap_dump_open(dead, out);
  if (!d) {
    fprintf(stderr, "bench-prep: %s: %s\n", out, pcap_geterr(dead));
    exit(1);
  }
  int64_t t_end = 1600000000ll * 1000000000ll;
  long total = 0;
  for (int r = 0; r < rounds; r++) {
    FILE *m = fopen(TL_BENCH_PCAPS "/MANIFEST.tsv", "r");
    if (!m) {
      fprintf(stderr, "bench-prep: no %s/MANIFEST.tsv\n", TL_BENCH_PCAPS);
      exit(1);
    }
    char line[8192];
    while (fgets(line, sizeof line, m)) {
      char *f[12];
      int nf = 0;
      for (char *s = line, *tab; nf < 12; s = tab + 1) {
        f[nf++] = s;
        if (!(tab = strchr(s, '\t'))) break;
        *tab = 0;
      }
      if (nf < 8 || strcmp(f[7], "ether") || !strncmp(f[0], "_edge", 5)) continue;
      char path[2048];
      snprintf(path, sizeof path, TL_BENCH_PCAPS "/%s", f[0]);
      total += append_file(d, path, &t_end);
    }
    fclose(m);
  }
  pcap_dump_close(d);
  pcap_close(dead);
  return total;
}

// --- the measured work, each run in a child ---------------------------------------

typedef struct {
  double seconds;
  long packets;
  long child_rss_kb; // tshark: the peak RSS of the process system() ran
  double cpu_s;      // user + system CPU seconds (filled by the parent)
} tl_bench_out;

static volatile long g_sink; // keeps the bare loop's reads from being optimised away

// The floor: libpcap reads every packet and we touch its length.
static void work_bare(const char *path, tl_bench_out *o) {
  char err[PCAP_ERRBUF_SIZE];
  double t0 = now_s();
  pcap_t *p = pcap_open_offline_with_tstamp_precision(path, PCAP_TSTAMP_PRECISION_NANO, err);
  if (!p) exit(2);
  struct pcap_pkthdr *h;
  const u_char *data;
  long n = 0, bytes = 0;
  while (pcap_next_ex(p, &h, &data) == 1) n++, bytes += h->caplen + data[0];
  pcap_close(p);
  o->seconds = now_s() - t0;
  g_sink = bytes;
  o->packets = n;
}

// tl's reading half: capture, normalise, header policy, flows and bursts.
static void work_flows(const char *path, tl_bench_out *o) {
  double t0 = now_s();
  tl_flow_options fo;
  tl_flow_options_default(&fo);
  tl_flow_table *t = tl_flow_table_new(&fo, NULL, 0);
  tl_capture *c = tl_capture_open(path);
  if (!c) exit(2);
  tl_capture_packet p;
  long n = 0;
  uint8_t buf[64];
  while (tl_capture_next(c, &p) == 1) {
    n++;
    tl_packet_info in;
    if (tl_packet_parse(p.linktype, p.data, p.caplen, p.wirelen, &in) != TL_SKIP_NONE) continue;
    size_t k = tl_packet_bytes(&in, TL_HEADER_ANONYMOUS, 1, p.data, p.caplen, buf, sizeof buf);
    tl_flow_table_add(t, &in, p.ts_ns, p.number, buf, k);
  }
  tl_flow_table_flush(t);
  tl_capture_close(c);
  tl_flow_table_free(t);
  o->seconds = now_s() - t0;
  o->packets = n;
}

// The whole command: tl_prep_run into the dataset builder (HDF5 shards).
static void work_prep(const char *path, tl_task task, int compress, tl_bench_out *o) {
  tl_prep_options po;
  tl_prep_options_default(&po, task);
  po.ds.compress = compress;
  po.in = tl_xmalloc(sizeof *po.in);
  // Classification wants class folders: one class, a link to the capture.
  const char *cls = "/tmp/tl_bench_prep_classes";
  mkdir(cls, 0755);
  mkdir(tl_fmt("%s/ether", cls), 0755);
  unlink(tl_fmt("%s/ether/input.pcap", cls));
  if (symlink(path, tl_fmt("%s/ether/input.pcap", cls)) != 0) exit(2);
  po.in[0] = tl_xstrdup(task == TL_TASK_PRETRAIN ? path : cls);
  po.n_in = 1;
  po.out_dir = tl_xstrdup("/tmp/tl_bench_prep_out");
  po.progress = 0;
  tl_prep_counts c;
  double t0 = now_s();
  if (tl_prep_run(&po, NULL, &c) != TL_OK) {
    fprintf(stderr, "bench-prep: %s\n", tl_last_error());
    exit(2);
  }
  o->seconds = now_s() - t0;
  o->packets = (long)c.packets_read;
  tl_prep_options_free(&po);
}

// tshark extracting lengths and payloads, output discarded.
static void work_tshark(const char *path, tl_bench_out *o) {
  char cmd[1024];
  snprintf(cmd, sizeof cmd,
           "tshark -n -r '%s' -T fields -e frame.len -e tcp.payload -e udp.payload "
           "> /dev/null 2>&1", path);
  double t0 = now_s();
  int rc = system(cmd);
  o->seconds = now_s() - t0;
  o->packets = rc == 0 ? 1 : -1;
  struct rusage ru;
  getrusage(RUSAGE_CHILDREN, &ru);
  o->child_rss_kb = ru.ru_maxrss;
}

typedef enum {
  W_BARE, W_FLOWS, W_PREP_PRETRAIN, W_PREP_PACKET, W_PREP_PRETRAIN_Z, W_PREP_PACKET_Z, W_TSHARK,
  N_WORK
} tl_work;

// Runs one measurement in a child; returns its time, packets and peak RSS (KiB).
static tl_bench_out measure(tl_work w, const char *path, long *maxrss_kb) {
  // Each tl-prep row starts from an empty output folder, as tshark writes to
  // /dev/null: deleting the last row's shards is not part of the work.
  if (system("rm -rf /tmp/tl_bench_prep_out") != 0) exit(1);
  int fds[2];
  if (pipe(fds) != 0) exit(1);
  fflush(stdout); // or the child flushes the parent's buffered lines again
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    tl_bench_out o = {0};
    if (w == W_BARE) work_bare(path, &o);
    if (w == W_FLOWS) work_flows(path, &o);
    if (w == W_PREP_PRETRAIN) work_prep(path, TL_TASK_PRETRAIN, 0, &o);
    if (w == W_PREP_PACKET) work_prep(path, TL_TASK_PACKET, 0, &o);
    if (w == W_PREP_PRETRAIN_Z) work_prep(path, TL_TASK_PRETRAIN, 1, &o);
    if (w == W_PREP_PACKET_Z) work_prep(path, TL_TASK_PACKET, 1, &o);
    if (w == W_TSHARK) work_tshark(path, &o);
    if (write(fds[1], &o, sizeof o) != (ssize_t)sizeof o) _exit(3);
    _exit(0);
  }
  close(fds[1]);
  tl_bench_out o = {0};
  if (read(fds[0], &o, sizeof o) != (ssize_t)sizeof o) o.packets = -1;
  close(fds[0]);
  int status;
  struct rusage ru;
  wait4(pid, &status, 0, &ru);
  // wait4's usage covers the child and the children it waited for (tshark).
  *maxrss_kb = o.child_rss_kb > ru.ru_maxrss ? o.child_rss_kb : ru.ru_maxrss;
  o.cpu_s = (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec +
            (double)ru.ru_stime.tv_sec + 1e-6 * (double)ru.ru_stime.tv_usec;
  return o;
}

// --- results ------------------------------------------------------------------

// Replaces (or appends) the "## tl-prep" section of RESULTS.md with text.
static void write_section(const char *results, const char *text) {
  char *old = NULL;
  long n = 0;
  FILE *f = fopen(results, "r");
  if (f) {
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    old = calloc(1, (size_t)n + 1);
    if (fread(old, 1, (size_t)n, f) != (size_t)n) n = 0;
    fclose(f);
  }
  const char *start = old ? strstr(old, "## tl-prep\n") : NULL;
  const char *end = start ? strstr(start + 1, "\n## ") : NULL;
  f = fopen(results, "w");
  if (!f) {
    fprintf(stderr, "bench-prep: cannot write %s\n", results);
    exit(1);
  }
  if (!old || !n) fputs("# Benchmark results\n\n", f);
  if (old && start) fwrite(old, 1, (size_t)(start - old), f);
  else if (old && n) fprintf(f, "%s%s", old, old[n - 1] == '\n' ? "\n" : "\n\n");
  fputs(text, f);
  if (end) fputs(end, f);
  fclose(f);
  free(old);
}

// Keeps, per row, the run with the least CPU time (other jobs on the machine
// only ever add time) and the largest peak memory.
static void keep_best(tl_bench_out *best, long *best_rss, const tl_bench_out *o, long rss) {
  if (best->cpu_s <= 0 || o->cpu_s < best->cpu_s) *best = *o;
  if (rss > *best_rss) *best_rss = rss;
}

int main(int argc, char **argv) {
  int rounds = 4, tshark = 1, repeat = 3;
  const char *results = "bench/RESULTS.md";
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--rounds") && i + 1 < argc) rounds = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--results") && i + 1 < argc) results = argv[++i];
    else if (!strcmp(argv[i], "--repeat") && i + 1 < argc) repeat = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--no-tshark")) tshark = 0;
    else {
      fprintf(stderr, "usage: bench-prep [--rounds N] [--repeat N] [--results FILE] "
                      "[--no-tshark]\n");
      return 1;
    }
  }
  if (tshark && system("tshark -v > /dev/null 2>&1") != 0) tshark = 0;
  tl_log_set_level(TL_LOG_ERROR);

  // Step 1: inputs of 1x and ROUNDSx, to see whether memory grows with the input.
  const char *small = "/tmp/tl_bench_prep_1x.pcap", *big = "/tmp/tl_bench_prep.pcap";
  long n_small = build_input(small, 1), n_big = build_input(big, rounds);
  struct stat st;
  stat(big, &st);
  printf("input: %ld packets (%d rounds, %.1f MB) and %ld packets (1 round)\n", n_big, rounds,
         (double)st.st_size / 1e6, n_small);

  // Step 2: every measurement on the big file, then tl's on the small one.
  const char *names[] = {"bare libpcap read loop", "tl read+parse+flows+bursts",
                         "tl-prep pretrain (HDF5 shards)", "tl-prep packet (HDF5 shards)",
                         "tl-prep pretrain --compress 1", "tl-prep packet --compress 1",
                         "tshark -T fields (len, payload)"};
  tl_bench_out out[N_WORK] = {0};
  long rss[N_WORK] = {0}, rss_small[N_WORK] = {0};
  // Rounds of every row in turn: a busy spell of the machine then slows one
  // run of each row rather than every run of one row.
  for (int r = 0; r < repeat; r++) {
    for (int w = 0; w < N_WORK; w++) {
      if (w == W_TSHARK && !tshark) continue;
      long one_rss;
      tl_bench_out o = measure((tl_work)w, big, &one_rss);
      keep_best(&out[w], &rss[w], &o, one_rss);
    }
    fprintf(stderr, "round %d of %d done\n", r + 1, repeat);
  }
  for (int w = 0; w < N_WORK; w++) {
    if (w == W_TSHARK && !tshark) continue;
    printf("%-34s %8.2f s wall %8.2f s cpu  %10.0f packets/cpu-s  peak %7.1f MiB\n", names[w],
           out[w].seconds, out[w].cpu_s, (double)n_big / out[w].cpu_s, (double)rss[w] / 1024);
  }
  for (int w = W_FLOWS; w < W_TSHARK; w++) {
    measure((tl_work)w, small, &rss_small[w]);
    printf("%-34s peak %7.1f MiB on the 1x input\n", names[w], (double)rss_small[w] / 1024);
  }

  // Step 3: the RESULTS.md section.
  char text[8192];
  int len = snprintf(text, sizeof text,
      "## tl-prep\n\n"
      "`bench-prep` (bench/prep.c), one run: input built from every Ethernet class file of\n"
      "the shared set, %d times over, time-shifted one after another into one pcap: %ld packets,\n"
      "%.1f MB. Each row is its own process; peak = getrusage maxrss. The machine's 2 cores\n"
      "are shared with other jobs, so rates and ratios use CPU seconds (user + system,\n"
      "tshark's own process included), the least of %d rounds that run every row in turn;\n"
      "wall seconds are shown for reference. tl-prep rows use the defaults (shards not\n"
      "compressed); the `--compress 1` rows write byte-shuffled, deflated shards about 4x\n"
      "smaller.\n\n"
      "| what | CPU s | wall s | packets per CPU s | tshark / this | this / bare read |"
      " peak MiB (%dx) | peak MiB (1x) |\n"
      "|---|---:|---:|---:|---:|---:|---:|---:|\n",
      rounds, n_big, (double)st.st_size / 1e6, repeat, rounds);
  for (int w = 0; w < N_WORK; w++) {
    if (out[w].cpu_s <= 0) continue;
    double pps = (double)n_big / out[w].cpu_s;
    char vt[32] = "n/a", vb[32];
    if (out[W_TSHARK].cpu_s > 0)
      snprintf(vt, sizeof vt, "%.1fx", out[W_TSHARK].cpu_s / out[w].cpu_s);
    snprintf(vb, sizeof vb, "%.1fx", out[w].cpu_s / out[W_BARE].cpu_s);
    char small_rss[32] = "";
    if (rss_small[w]) snprintf(small_rss, sizeof small_rss, "%.1f", (double)rss_small[w] / 1024);
    len += snprintf(text + len, sizeof text - (size_t)len,
                    "| %s | %.2f | %.2f | %.0f | %s | %s | %.1f | %s |\n", names[w], out[w].cpu_s,
                    out[w].seconds, pps, vt, vb, (double)rss[w] / 1024, small_rss);
  }
  if (out[W_FLOWS].cpu_s > 0 && out[W_PREP_PACKET].cpu_s > 0 && out[W_PREP_PRETRAIN].cpu_s > 0)
    len += snprintf(text + len, sizeof text - (size_t)len,
                    "\nThe reading half (capture, normalise, flows, bursts) is %.0f%% of "
                    "tl-prep's\n"
                    "CPU for pretrain and %.0f%% for packet; the rest is the dataset builder\n"
                    "(tokenizing, spooling, HDF5 writing; compressing with --compress).\n",
                    100 * out[W_FLOWS].cpu_s / out[W_PREP_PRETRAIN].cpu_s,
                    100 * out[W_FLOWS].cpu_s / out[W_PREP_PACKET].cpu_s);
  snprintf(text + len, sizeof text - (size_t)len,
           "\nAims (issue #3): 40x tshark or more, within 10x of the bare read, memory flat as\n"
           "the input grows (compare the two peak columns). Rerun: `build/bench-prep`.\n\n");
  write_section(results, text);
  printf("wrote the '## tl-prep' section of %s\n", results);
  unlink(small);
  return 0;
}
