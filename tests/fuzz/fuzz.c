#include "fuzz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

char *brg_fuzz_string(const uint8_t *data, size_t size) {
    char *s = malloc(size + 1);
    if (!s) return NULL;
    if (size) memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

const char *brg_fuzz_file(const uint8_t *data, size_t size) {
    static int fd = -1;
    static char path[64];
    if (fd < 0) {
        fd = memfd_create("brigade-fuzz-input", MFD_CLOEXEC);
        if (fd < 0) return NULL;
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    }
    if (ftruncate(fd, 0) != 0) return NULL;
    for (size_t done = 0; done < size;) {
        ssize_t n = pwrite(fd, data + done, size - done, (off_t)done);
        if (n <= 0) return NULL;
        done += (size_t)n;
    }
    return path;
}

const char *brg_fuzz_fixtures(void) {
    const char *dir = getenv("BRG_TEST_FIXTURES");
    return dir && dir[0] ? dir : BRG_FUZZ_FIXTURES;
}

int brg_fuzz_split_lines(const uint8_t *data, size_t size, char **argv, int max, char **storage) {
    *storage = brg_fuzz_string(data, size);
    if (!*storage) return 0;
    int argc = 0;
    for (char *line = *storage; line && argc < max;) {
        char *end = strchr(line, '\n');
        if (end) *end = '\0';
        argv[argc++] = line;
        line = end ? end + 1 : NULL;
    }
    return argc;
}

void brg_fuzz_fail(const char *what) {
    fprintf(stderr, "fuzz target: %s\n", what);
    abort();
}

void brg_fuzz_check_error(int status, const char *message, const char *call) {
    if (status == 0 || (message && message[0])) return;
    fprintf(stderr, "fuzz target: %s failed (status %d) with an empty message\n", call, status);
    abort();
}
