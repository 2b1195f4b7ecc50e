/* The kernel's price for writing what `extract` must write, with no decoding at all.
 *
 *   write_floor IMAGE OUT [PAGE [sparse|packed|fallocated]]
 *
 * Reads IMAGE (a RAM image, e.g. mixed-1g.img) into memory, finds its non-zero
 * pages, then times three ways of writing them to OUT:
 *   sparse      one pwrite per run of non-zero pages at its offset, holes between
 *               (what a sparse block file needs: what `extract` does);
 *   packed      the same pwrites, back to back (the same bytes, no holes);
 *   fallocated  like sparse, into a file fallocate()d to full size first (not sparse).
 * Each is the best of 3, timed from open() to close() (page cache, no fsync), the
 * same span a command's wall time covers.  bench_write_floor.py compiles and runs it.
 * With a fourth argument only that way runs, once, and OUT is kept (bench_floor.py
 * alternates it with `migstream extract`).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static const unsigned char *image;
static unsigned char *nonzero;
static size_t pages, page;

static double run(const char *out, int mode, size_t *runs)
{
    unlink(out);
    sync();
    double t0 = now();
    int fd = open(out, O_CREAT | O_TRUNC | O_WRONLY, 0644);
    if (fd < 0) { perror(out); exit(1); }
    if (mode == 2 && fallocate(fd, 0, 0, pages * page)) { perror("fallocate"); exit(1); }
    if (mode != 2 && ftruncate(fd, pages * page)) { perror("ftruncate"); exit(1); }
    size_t packed = 0;
    *runs = 0;
    for (size_t i = 0; i < pages;) {
        if (!nonzero[i]) { i++; continue; }
        size_t j = i;
        while (j < pages && nonzero[j]) j++;
        size_t len = (j - i) * page;
        off_t at = mode == 1 ? (off_t)packed : (off_t)(i * page);
        if (pwrite(fd, image + i * page, len, at) != (ssize_t)len) { perror("pwrite"); exit(1); }
        packed += len;
        ++*runs;
        i = j;
    }
    close(fd);
    return now() - t0;
}

int main(int argc, char **argv)
{
    if (argc < 3) { fprintf(stderr, "usage: write_floor IMAGE OUT [PAGE]\n"); return 2; }
    page = argc > 3 ? strtoul(argv[3], NULL, 0) : 4096;
    int fd = open(argv[1], O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st)) { perror(argv[1]); return 1; }
    pages = st.st_size / page;
    image = mmap(NULL, pages * page, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
    if (image == MAP_FAILED) { perror("mmap"); return 1; }
    nonzero = calloc(pages, 1);
    size_t data = 0;
    for (size_t i = 0; i < pages; i++) {
        const unsigned char *p = image + i * page;
        nonzero[i] = p[0] || memcmp(p, p + 1, page - 1);
        data += nonzero[i] ? page : 0;
    }
    static const char *names[] = {"sparse", "packed", "fallocated"};
    int only = -1;
    for (int mode = 0; argc > 4 && mode < 3; mode++)
        if (!strcmp(argv[4], names[mode])) only = mode;
    if (argc > 4 && only < 0) { fprintf(stderr, "%s: not sparse, packed or fallocated\n", argv[4]); return 2; }
    for (int mode = 0; mode < 3; mode++) {
        if (only >= 0 && mode != only) continue;
        double best = 1e9;
        size_t runs = 0;
        for (int r = 0; r < (only >= 0 ? 1 : 3); r++) {
            double t = run(argv[2], mode, &runs);
            if (t < best) best = t;
        }
        printf("{\"way\": \"%s\", \"seconds\": %.4f, \"bytes\": %zu, \"writes\": %zu}\n",
               names[mode], best, data, runs);
        fflush(stdout);
    }
    if (only < 0) unlink(argv[2]);
    return 0;
}
