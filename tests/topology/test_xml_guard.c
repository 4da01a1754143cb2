/* hwloc XML files are checked before hwloc reads them (topology/xml_guard.c): inputs that crashed hwloc
 * 2.9's minimalistic parser, their neighbours, and a fixed set of mutations of the fixture files, each
 * through brg_topology_load_xml and through `brigade topo --xml`: an error naming the file and what is
 * wrong, or a topology, never a crash (the suite runs under ASan, UBSan and LeakSanitizer). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "brigade.h"
#include "brigade_config.h"
#include "harness.h"
#include "topology/topology_internal.h"

static const char *write_xml(const char *name, const char *text, size_t size) {
    static char path[512];
    brg_test_tmp_path(path, sizeof path, name);
    FILE *f = fopen(path, "wb");
    CU_ASSERT_FATAL(f != NULL);
    fwrite(text, 1, size, f);
    fclose(f);
    return path;
}

/* Loads `text` as an XML file; expects BRG_ERR_PARSE with the file name and `needle`. */
static void expect_bad(const char *text, const char *needle) {
    const char *path = write_xml("bad.xml", text, strlen(text));
    brg_topology *t = NULL;
    brg_error err = {0};
    brg_status s = brg_topology_load_xml(&t, path, NULL, &err);
    if (s != BRG_ERR_PARSE) fprintf(stderr, "input: %.200s\n", text);
    BRG_ASSERT_STATUS(s, BRG_ERR_PARSE);
    CU_ASSERT(t == NULL);
    BRG_ASSERT_CONTAINS(err.message, "bad.xml");
    if (needle) BRG_ASSERT_CONTAINS(err.message, needle);
    brg_topology_destroy(t);
}

#define HEAD "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<topology version=\"2.0\">\n"
#define MACHINE(cpuset)                                                                                            \
    "  <object type=\"Machine\" os_index=\"0\" cpuset=\"" cpuset "\" complete_cpuset=\"0x00000001\" "              \
    "allowed_cpuset=\"0x00000001\" nodeset=\"0x00000001\" complete_nodeset=\"0x00000001\" "                         \
    "allowed_nodeset=\"0x00000001\" gp_index=\"1\">\n"                                                             \
    "    <object type=\"PU\" os_index=\"0\" cpuset=\"0x00000001\" complete_cpuset=\"0x00000001\" gp_index=\"2\"/>\n" \
    "  </object>\n"
#define TAIL "</topology>\n"

static char *read_fixture(const char *name, size_t *size);

#define CRASH_CUT "<topologyversion=\"2.0"
#define CRASH_ASSERT "<topologyversion=\"2.0><object =\"\"=\"\"cpuset=\",0\">"

static void test_known_crashes(void) {
    /* Each of these crashed or aborted inside hwloc 2.9 before the checks. */
#if BRG_HAVE_LIBXML2
    expect_bad(CRASH_CUT, "bad.xml:1:17: malformed XML");
    expect_bad(CRASH_ASSERT, "malformed XML");
    expect_bad(HEAD MACHINE(",0") TAIL, "bad.xml:3: object attribute cpuset \",0\" is not an hwloc bitmap");
#else
    /* Without libxml2, the probe in a child process is what stands between them and a crash. */
    expect_bad(CRASH_CUT, "hwloc crashed reading this file (signal 11");
    expect_bad(CRASH_ASSERT, "hwloc crashed reading this file");
    expect_bad(HEAD MACHINE(",0") TAIL, "hwloc crashed reading this file");
#endif
}

static void test_probe(void) {
    /* The last guard on its own: the raw inputs, straight to hwloc in a child process. */
    struct {
        const char *text, *needle;
    } cases[] = {
        {CRASH_CUT, "hwloc crashed reading this file (signal 11"},
        {CRASH_ASSERT, "hwloc crashed reading this file (signal 6"},
        {HEAD MACHINE(",0") TAIL, "hwloc crashed reading this file (signal 6"},
        {"<topology version=\"2.0\"></topology>", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        brg_error err = {0};
        brg_status s = brg__hwloc_probe(cases[i].text, (int)strlen(cases[i].text) + 1, "", "raw.xml", &err);
        BRG_ASSERT_STATUS(s, BRG_ERR_PARSE);
        BRG_ASSERT_CONTAINS(err.message, "raw.xml: ");
        if (cases[i].needle) BRG_ASSERT_CONTAINS(err.message, cases[i].needle);
    }
    size_t size;
    char *good = read_fixture("power8gpudistances.xml", &size);
    brg_error err = {0};
    BRG_ASSERT_OK(brg__hwloc_probe(good, (int)size + 1, "", "good.xml", &err), err.message);
    free(good);
}

static void test_malformed_documents(void) {
#if BRG_HAVE_LIBXML2
    expect_bad("<topology version=\"2.0\">", "malformed XML");              /* cut short */
    expect_bad(HEAD MACHINE("0x1"), "malformed XML");                        /* unclosed root */
    expect_bad(HEAD "<object type=Machine/>" TAIL, "malformed XML");        /* unquoted attribute */
    expect_bad(HEAD "<object type=\"Machine\"></objekt>" TAIL, "malformed XML");
    expect_bad(HEAD "<info name=\"a&bogus;\" value=\"b\"/>" TAIL, "malformed XML"); /* undeclared entity */
    expect_bad(HEAD "<info name=\"a&#0;\" value=\"b\"/>" TAIL, "malformed XML");    /* NUL character */
    expect_bad("<?xml version=\"1.0\"?>\n<root>" MACHINE("0x1") "</root>\n", "the root element is <root>");
    expect_bad("<?xml version=\"1.0\"?>\n<topology version=\"two\">" MACHINE("0x1") TAIL, "topology version \"two\"");
    /* Entities: a billion laughs is refused, never expanded. */
    expect_bad("<?xml version=\"1.0\"?>\n<!DOCTYPE topology [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;"
               "&a;&a;&a;&a;\"><!ENTITY c \"&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;\"><!ENTITY d \"&c;&c;&c;&c;&c;&c;&c;&c;&c;"
               "&c;\"><!ENTITY e \"&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;\"><!ENTITY f \"&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;\">"
               "<!ENTITY g \"&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;\"><!ENTITY h \"&g;&g;&g;&g;&g;&g;&g;&g;&g;&g;\">]>\n"
               "<topology version=\"2.0\"><info name=\"&h;\" value=\"x\"/></topology>\n",
               NULL);
    /* 10,000 nested objects: libxml2's depth limit, not our stack. */
    size_t n = 10000, size = n * 32 + 256;
    char *deep = malloc(size), *w = deep;
    w += sprintf(w, HEAD);
    for (size_t i = 0; i < n; i++) w += sprintf(w, "<object type=\"Group\">");
    for (size_t i = 0; i < n; i++) w += sprintf(w, "</object>");
    sprintf(w, TAIL);
    expect_bad(deep, "malformed XML");
    free(deep);
#endif
    expect_bad("", "empty file");
    expect_bad("\x01\x02\x03 not xml at all", NULL);
}

static void test_bad_attributes(void) {
#if BRG_HAVE_LIBXML2
    const char *bitmaps[] = {",0", "0x", ",", "0x123456789", "0xg", "0x1,,0x", " 0x1", "0x1;0x2", "0xf...f,,0"};
    for (size_t i = 0; i < sizeof bitmaps / sizeof bitmaps[0]; i++) {
        char text[2048];
        snprintf(text, sizeof text, HEAD
                 "  <object type=\"Machine\" os_index=\"0\" cpuset=\"%s\" complete_cpuset=\"0x1\" gp_index=\"1\"/>\n"
                 TAIL, bitmaps[i]);
        expect_bad(text, "object attribute cpuset");
    }
    expect_bad(HEAD "  <object os_index=\"0\" cpuset=\"0x1\"/>\n" TAIL, "bad.xml:3: object without a type attribute");
    expect_bad(HEAD "  <object type=\"PU\" os_index=\"99999999999999999999999\"/>\n" TAIL,
               "object attribute os_index \"99999999999999999999999\" is not a whole number");
    expect_bad(HEAD "  <object type=\"PU\" os_index=\"-1\"/>\n" TAIL, "os_index \"-1\" is not a whole number");
    expect_bad(HEAD "  <info name=\"x\"/>\n" TAIL, "info element without a name and a value");
    expect_bad(HEAD "  <distances2 type=\"NUMANode\" nbobjs=\"4294967297\" kind=\"5\"/>\n" TAIL,
               "nbobjs 4294967297 is more than the 65536 objects");
#endif
}

static void test_bitmap_syntax(void) {
    const char *good[] = {"0x00000001", "0x00000303,0x03030000,,0x03030303", "0xf...f", "0xf...f,0x0000ffff",
                          "0xff", "ff,0x1", "0x1,", ""};
    const char *bad[] = {",0", ",", "0x", "0x123456789", "0x1 ", "0xz", "0xf...f,", "0xf...f,,0x1"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        if (!brg__hwloc_bitmap_ok(good[i])) fprintf(stderr, "refused: \"%s\"\n", good[i]);
        CU_ASSERT(brg__hwloc_bitmap_ok(good[i]));
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (brg__hwloc_bitmap_ok(bad[i])) fprintf(stderr, "accepted: \"%s\"\n", bad[i]);
        CU_ASSERT(!brg__hwloc_bitmap_ok(bad[i]));
    }
}

static void test_fixtures_unchanged(void) {
    /* The real machines still load through the checks, with the figures the topology suite knows. */
    const char *files[] = {"nvidiaDGX2.xml", "power8gpudistances.xml", "32em64t-2n8c2t-pci-normalio.xml"};
    const int devices[] = {16, 4, 1};
    for (int i = 0; i < 3; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/topologies/%s", brg_test_fixtures(), files[i]);
        brg_topology *t = NULL;
        brg_error err = {0};
        BRG_ASSERT_OK(brg_topology_load_xml(&t, path, NULL, &err), err.message);
        BRG_ASSERT_EQ_INT(brg_topology_device_count(t), devices[i]);
        brg_topology_destroy(t);
    }
}

/* ---- mutations ---------------------------------------------------------------------------------------- */

static uint64_t next_random(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static char *read_fixture(const char *name, size_t *size) {
    char path[512];
    snprintf(path, sizeof path, "%s/topologies/%s", brg_test_fixtures(), name);
    FILE *f = fopen(path, "rb");
    CU_ASSERT_FATAL(f != NULL);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc((size_t)n + 1);
    CU_ASSERT_FATAL(text != NULL && fread(text, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    text[n] = '\0';
    *size = (size_t)n;
    return text;
}

/* One mutation of src (size bytes) into dst (room for size + 64), by kind; returns the new size. */
static size_t mutate(const char *src, size_t size, char *dst, uint64_t *rng) {
    static const char specials[] = "<>\"=,/&; x0f.\n";
    static const char *const junk[] = {"", ",0", "0x", "-1", "99999999999999999999999", "0xf...f,,", "&amp;", "a<b",
                                       "0x1,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,0x1", "4294967296", "nan"};
    size_t at = size ? (size_t)(next_random(rng) % size) : 0;
    memcpy(dst, src, size);
    switch (next_random(rng) % 6) {
    case 0: /* one byte replaced by a character the parsers care about */
        dst[at] = specials[next_random(rng) % (sizeof specials - 1)];
        return size;
    case 1: /* truncated */
        return at;
    case 2: /* one byte deleted */
        memmove(dst + at, src + at + 1, size - at - 1);
        return size - 1;
    case 3: { /* a short run duplicated */
        size_t n = 1 + next_random(rng) % 32;
        if (at + n > size) n = size - at;
        memcpy(dst, src, at + n);
        memcpy(dst + at + n, src + at, size - at);
        return size + n;
    }
    case 4: { /* one quote or angle bracket deleted */
        const char *marks = "\"<>";
        char mark = marks[next_random(rng) % 3];
        const char *p = memchr(src + at, mark, size - at);
        if (!p) return size;
        size_t k = (size_t)(p - src);
        memmove(dst + k, src + k + 1, size - k - 1);
        return size - 1;
    }
    default: { /* an attribute value replaced by junk */
        const char *p = src + at, *end = src + size;
        while (p + 1 < end && !(p[0] == '=' && p[1] == '"')) p++;
        if (p + 1 >= end) return size;
        const char *value = p + 2, *close = memchr(value, '"', (size_t)(end - value));
        if (!close) return size;
        const char *j = junk[next_random(rng) % (sizeof junk / sizeof junk[0])];
        size_t head = (size_t)(value - src), jn = strlen(j);
        if (jn > 60) jn = 60;
        memcpy(dst + head, j, jn);
        memcpy(dst + head + jn, close, (size_t)(end - close));
        return head + jn + (size_t)(end - close);
    }
    }
}

static void test_mutations(void) {
    const char *files[] = {"nvidiaDGX2.xml", "power8gpudistances.xml", "32em64t-2n8c2t-pci-normalio.xml"};
    uint64_t rng = 20261202;
    int loaded = 0, refused = 0, crashed = 0, runs = 0;
    for (int f = 0; f < 3; f++) {
        size_t size;
        char *src = read_fixture(files[f], &size);
        char *dst = malloc(size + 128);
        for (int k = 0; k < 110; k++) {
            size_t n = mutate(src, size, dst, &rng);
            char name[64];
            snprintf(name, sizeof name, "mutant-%d-%d.xml", f, k);
            const char *path = write_xml(name, dst, n);
            brg_topology *t = NULL;
            brg_error err = {0};
            brg_status s = brg_topology_load_xml(&t, path, NULL, &err);
            if (s != BRG_OK && s != BRG_ERR_PARSE) fprintf(stderr, "%s: %s: %s\n", name, brg_status_name(s), err.message);
            CU_ASSERT(s == BRG_OK || s == BRG_ERR_PARSE);
            if (s == BRG_OK) loaded++;
            else {
                refused++;
                CU_ASSERT(strstr(err.message, name) != NULL);
            }
            brg_topology_destroy(t);
            /* Every third one through the program too: it exits 0 or 2 with a message, never by a signal. */
            if (k % 3 == 0) {
                const brg_test_run *r = brg_test_run_brigade((const char *const[]){"topo", "--xml", path, NULL});
                runs++;
                if (r->exit_code >= 128 || (r->exit_code != 0 && r->exit_code != 2)) {
                    crashed++;
                    fprintf(stderr, "%s: brigade topo exited %d: %.300s\n", name, r->exit_code, r->err);
                }
                if (r->exit_code == 2) CU_ASSERT(strstr(r->err, name) != NULL);
            }
            remove(path);
        }
        free(dst);
        free(src);
    }
    printf("\n    %d mutations: %d loaded, %d refused with an error; %d runs of brigade topo, %d crashed\n",
           loaded + refused, loaded, refused, runs, crashed);
    BRG_ASSERT_EQ_INT(crashed, 0);
    CU_ASSERT(refused > 0);
}

int main(int argc, char **argv) {
    static const brg_test_case cases[] = {
        {"known_crashes", test_known_crashes},
        {"probe", test_probe},
        {"malformed_documents", test_malformed_documents},
        {"bad_attributes", test_bad_attributes},
        {"bitmap_syntax", test_bitmap_syntax},
        {"fixtures_unchanged", test_fixtures_unchanged},
        {"mutations", test_mutations},
        {NULL, NULL},
    };
    return brg_test_main(argc, argv, "xml-guard", cases);
}
