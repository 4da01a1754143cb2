/* Shared by the fuzz targets of tests/fuzz: each defines LLVMFuzzerTestOneInput, which libFuzzer calls
 * with generated inputs (tools/fuzz.sh) and replay.c with every file of the target's corpus (meson test).
 * A target must never crash, leak or trip a sanitizer, whatever the bytes; errors are what it expects. */
#ifndef BRIGADE_FUZZ_H
#define BRIGADE_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The input as a NUL-terminated string (malloc'd; NULL when out of memory). Bytes after an embedded NUL
 * are kept but unseen by string parsers, as they would be in a file read by one. */
char *brg_fuzz_string(const uint8_t *data, size_t size);

/* The input as a file of its own: a private in-memory file (memfd) whose path ("/proc/self/fd/N") stays
 * valid until the next call; NULL when the system refuses. Nothing is written to disk, and parallel
 * fuzzing processes cannot see each other's inputs. */
const char *brg_fuzz_file(const uint8_t *data, size_t size);

/* The test fixtures directory (tests/fixtures), for targets whose inputs name fixture files. */
const char *brg_fuzz_fixtures(void);

/* Splits the input into at most `max` arguments, one per line ('\n'; a NUL ends the input), into argv
 * (pointers into *storage, which the caller frees). Returns the count. */
int brg_fuzz_split_lines(const uint8_t *data, size_t size, char **argv, int max, char **storage);

/* A failed call must say what was wrong: a failure with an empty message aborts, so that the fuzzer
 * reports it as it reports a crash. */
void brg_fuzz_check_error(int status, const char *message, const char *call);

/* An invariant of the code under test that the input broke: reported, then abort(). */
void brg_fuzz_fail(const char *what);

#endif
