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
/* A Machine with every set, left open for children. */
#define MACHINE_OPEN                                                                                               \
    "  <object type=\"Machine\" os_index=\"0\" cpuset=\"0x00000003\" complete_cpuset=\"0x00000003\" "              \
    "allowed_cpuset=\"0x00000003\" nodeset=\"0x00000001\" complete_nodeset=\"0x00000001\" "                         \
    "allowed_nodeset=\"0x00000001\" gp_index=\"1\">\n"

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
    expect_bad(CRASH_CUT, "hwloc crashed reading this file (signal 11, SIGSEGV");
    expect_bad(CRASH_ASSERT, "hwloc crashed reading this file");
    expect_bad(HEAD MACHINE(",0") TAIL, "hwloc crashed reading this file");
#endif
}

static void test_probe(void) {
    /* The last guard on its own: the raw inputs, straight to hwloc in a child process. */
    struct {
        const char *text, *needle;
    } cases[] = {
        {CRASH_CUT, "hwloc crashed reading this file (signal 11, SIGSEGV"},
        /* hwloc's own words come along: the assertion glibc printed in the child. */
        {CRASH_ASSERT, "(signal 6, SIGABRT: Aborted); it is malformed: "},
        {HEAD MACHINE(",0") TAIL, "Assertion `count > 0' failed"},
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
               "malformed XML");
    /* A small declared entity parses, and is refused after. */
    expect_bad("<?xml version=\"1.0\"?>\n<!DOCTYPE topology [<!ENTITY a \"x\">]>\n<topology version=\"2.0\">"
               "<info name=\"&a;\" value=\"x\"/></topology>\n", "the document declares entities");
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
    const char *bitmaps[] = {",0", "0x", ",", "", "0x123456789", "0xg", "0x1,,0x", " 0x1", "0x1;0x2", "0xf...f,,0"};
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

/* What hwloc reads through NULL or sizes allocations by, beyond the syntax of single attributes. */
static void test_bad_structure(void) {
#if BRG_HAVE_LIBXML2
    /* Siblings without complete_cpuset: hwloc 2.9 compares them through NULL (SIGSEGV before the checks). */
    expect_bad(HEAD MACHINE_OPEN "    <object type=\"PU\" os_index=\"1\" cpuset=\"0x00000002\" gp_index=\"2\"/>\n"
               "    <object type=\"PU\" os_index=\"0\" cpuset=\"0x00000001\" gp_index=\"3\"/>\n  </object>\n" TAIL,
               "bad.xml:4: PU object has cpuset but no complete_cpuset (hwloc needs both)");
    expect_bad(HEAD MACHINE_OPEN "    <object type=\"NUMANode\" os_index=\"0\" cpuset=\"0x1\" complete_cpuset=\"0x1\" "
               "complete_nodeset=\"0x1\"/>\n  </object>\n" TAIL,
               "NUMANode object has complete_nodeset but no nodeset");
    /* hwloc 1.x files: a NUMA node's complete_cpuset is compared with its parent's (SIGSEGV before). */
    expect_bad("<?xml version=\"1.0\"?>\n<topology>\n" MACHINE_OPEN
               "    <object type=\"NUMANode\" os_index=\"0\" cpuset=\"0x1\" nodeset=\"0x1\" complete_nodeset=\"0x1\"/>\n"
               "  </object>\n" TAIL, "bad.xml:4: NUMANode object has cpuset but no complete_cpuset");
    expect_bad("<?xml version=\"1.0\"?>\n<topology>\n" MACHINE_OPEN
               "    <object type=\"NUMANode\" os_index=\"0\" nodeset=\"0x1\" complete_nodeset=\"0x1\"/>\n"
               "  </object>\n" TAIL, "NUMANode object without a cpuset");
    expect_bad(HEAD "  <object type=\"Machine\" os_index=\"0\" gp_index=\"1\">\n"
               "    <object type=\"PU\" os_index=\"0\" cpuset=\"0x1\" complete_cpuset=\"0x1\"/>\n  </object>\n" TAIL,
               "bad.xml:4: PU object has a cpuset but its parent object has none");
    /* Distances: hwloc allocates nbobjs indexes and nbobjs^2 values before it reads them. */
    expect_bad(HEAD MACHINE("0x00000001") "  <distances2 type=\"NUMANode\" nbobjs=\"60000\" kind=\"5\" indexing=\"os\">"
               "<indexes length=\"3\">0 1</indexes><u64values length=\"7\">1 2 3 4</u64values></distances2>\n" TAIL,
               "distances2 nbobjs 60000, but it lists 2 indexes");
    expect_bad(HEAD MACHINE("0x00000001") "  <distances2 type=\"NUMANode\" nbobjs=\"2\" kind=\"5\" indexing=\"os\">"
               "<indexes length=\"3\">0 1</indexes><u64values length=\"5\">1 2 3</u64values></distances2>\n" TAIL,
               "distances2 nbobjs 2 needs 4 values (nbobjs squared), but it has 3");
    expect_bad(HEAD MACHINE("0x00000001") "  <distances2 type=\"NUMANode\" nbobjs=\"2\" kind=\"5\" indexing=\"os\">"
               "<indexes length=\"9\">0 1</indexes><u64values length=\"7\">1 2 3 4</u64values></distances2>\n" TAIL,
               "distances2 indexes length 9, but its text is 3 characters long");
    expect_bad(HEAD MACHINE("0x00000001") "  <distances2 type=\"NUMANode\" kind=\"5\" indexing=\"os\"/>\n" TAIL,
               "distances2 without an nbobjs attribute");
    expect_bad("<?xml version=\"1.0\"?>\n<topology>\n" MACHINE_OPEN "    <distances nbobjs=\"2\" relative_depth=\"1\" "
               "latency_base=\"1.0\"><latency value=\"1\"/></distances>\n  </object>\n" TAIL,
               "distances nbobjs 2 needs 4 latency elements (nbobjs squared), but it has 1");
    /* Bitmaps outside objects: a memory attribute's initiator, a CPU kind. */
    expect_bad(HEAD MACHINE("0x00000001") "  <memattr name=\"x\" flags=\"5\"><memattr_value target_obj_gp_index=\"1\" "
               "target_obj_type=\"Machine\" value=\"3\" initiator_cpuset=\",0\"/></memattr>\n" TAIL,
               "memattr_value attribute initiator_cpuset \",0\" is not an hwloc bitmap");
    expect_bad(HEAD MACHINE("0x00000001") "  <cpukind cpuset=\"\"/>\n" TAIL, "cpukind attribute cpuset \"\" is not");
    expect_bad(HEAD "<object type=\"Machine\"><![CDATA[x]]></object>" TAIL, "CDATA section");
#endif
}

/* What hwloc tolerates, or what the canonical document smooths over, still loads: the same machine. */
static void test_tolerated(void) {
#if BRG_HAVE_LIBXML2
    size_t size;
    char *src = read_fixture("power8gpudistances.xml", &size);
    char reference_path[512];
    snprintf(reference_path, sizeof reference_path, "%s/topologies/power8gpudistances.xml", brg_test_fixtures());
    brg_topology *reference = NULL;
    brg_error err = {0};
    BRG_ASSERT_OK(brg_topology_load_xml(&reference, reference_path, NULL, &err), err.message);
    /* Comments and processing instructions (hwloc's parser knows none), CRLF line ends, single quotes. */
    char *edited = malloc(2 * size + 4096), *w = edited;
    for (size_t i = 0; i < size; i++) {
        if (src[i] == '\n') *w++ = '\r';
        if (i > 0 && src[i] == '"' && src[i - 1] == '=' && strncmp(src + i - 5, "type=", 5) == 0) {
            /* type="X" -> type='X' */
            const char *close = strchr(src + i + 1, '"');
            *w++ = '\'';
            memcpy(w, src + i + 1, (size_t)(close - src - i - 1));
            w += close - src - i - 1;
            *w++ = '\'';
            i = (size_t)(close - src);
            continue;
        }
        *w++ = src[i];
        if (src[i] == '\n' && i + 1 < size && strncmp(src + i + 1, "<topology", 9) == 0)
            w += sprintf(w, "<!-- annotated by hand -->\r\n");
        if (src[i] == '\n' && i + 1 < size && strncmp(src + i + 1 + strspn(src + i + 1, " "), "<object", 7) == 0)
            w += sprintf(w, "  <!-- a comment -->\r\n  <?pi ignored?>\r\n");
    }
    const char *path = write_xml("edited.xml", edited, (size_t)(w - edited));
    brg_topology *t = NULL;
    BRG_ASSERT_OK(brg_topology_load_xml(&t, path, NULL, &err), err.message);
    CU_ASSERT(t && reference && brg_topology_fingerprint(t) == brg_topology_fingerprint(reference));
    brg_topology_destroy(t);
    brg_topology_destroy(reference);
    remove(path);
    free(edited);
    free(src);
    /* An hwloc 1.x file (no version): read as such. */
    const char *v1 = "<?xml version=\"1.0\"?>\n<topology>\n" MACHINE_OPEN
                     "    <object type=\"NUMANode\" os_index=\"0\" cpuset=\"0x1\" complete_cpuset=\"0x1\" nodeset=\"0x1\" "
                     "complete_nodeset=\"0x1\" local_memory=\"1000\">\n"
                     "      <object type=\"PU\" os_index=\"0\" cpuset=\"0x1\" complete_cpuset=\"0x1\"/>\n"
                     "    </object>\n  </object>\n" TAIL;
    path = write_xml("v1.xml", v1, strlen(v1));
    t = NULL;
    BRG_ASSERT_OK(brg_topology_load_xml(&t, path, NULL, &err), err.message);
    BRG_ASSERT_EQ_INT(brg_topology_device_count(t), 1);
    brg_topology_destroy(t);
    remove(path);
#endif
}

static void test_bitmap_syntax(void) {
    const char *good[] = {"0x00000001", "0x00000303,0x03030000,,0x03030303", "0xf...f", "0xf...f,0x0000ffff",
                          "0xff", "ff,0x1", "0x1,", "0x0"};
    const char *bad[] = {",0", ",", "0x", "0x123456789", "0x1 ", "0xz", "0xf...f,", "0xf...f,,0x1", ""};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        if (!brg__hwloc_bitmap_ok(good[i])) fprintf(stderr, "refused: \"%s\"\n", good[i]);
        CU_ASSERT(brg__hwloc_bitmap_ok(good[i]));
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (brg__hwloc_bitmap_ok(bad[i])) fprintf(stderr, "accepted: \"%s\"\n", bad[i]);
        CU_ASSERT(!brg__hwloc_bitmap_ok(bad[i]));
    }
    /* At most BRG__HWLOC_BITMAP_MAX_WORDS words: hwloc allocates by the comma count. */
    size_t n = BRG__HWLOC_BITMAP_MAX_WORDS + 1;
    char *wide = malloc(2 * n); /* "1,1,...,1": n words */
    for (size_t i = 0; i < n; i++) {
        wide[2 * i] = '1';
        wide[2 * i + 1] = i + 1 < n ? ',' : '\0';
    }
    CU_ASSERT(!brg__hwloc_bitmap_ok(wide));
    wide[2 * (n - 2) + 1] = '\0'; /* one word fewer: at the limit */
    CU_ASSERT(brg__hwloc_bitmap_ok(wide));
    free(wide);
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
    switch (next_random(rng) % 7) {
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
    case 5: { /* one attribute deleted, name and value (a set without its pair, an object without its type) */
        const char *p = src + at, *end = src + size;
        while (p + 1 < end && !(p[0] == '=' && p[1] == '"')) p++;
        const char *close = p + 2 < end ? memchr(p + 2, '"', (size_t)(end - p - 2)) : NULL;
        if (!close) return size;
        const char *name = p;
        while (name > src && name[-1] != ' ') name--;
        size_t head = (size_t)(name - src), tail = (size_t)(end - close - 1);
        memcpy(dst + head, close + 1, tail);
        return head + tail;
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
    int loaded = 0, refused = 0, crashed = 0, runs = 0, probe_caught = 0;
    for (int f = 0; f < 3; f++) {
        size_t size;
        char *src = read_fixture(files[f], &size);
        char *dst = malloc(size + 128);
        for (int k = 0; k < 120; k++) {
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
                /* The checks should find what would crash hwloc before the probe in a child process does. */
                if (strstr(err.message, "hwloc crashed")) {
                    probe_caught++;
                    fprintf(stderr, "%s: only the probe caught it: %s\n", name, err.message);
                }
            }
            brg_topology_destroy(t);
            /* Through the program too: it exits 0, or 2 with a message naming the file, never by a signal. */
            const brg_test_run *r = brg_test_run_brigade((const char *const[]){"topo", "--xml", path, NULL});
            runs++;
            if (r->exit_code != 0 && r->exit_code != 2) {
                crashed++;
                fprintf(stderr, "%s: brigade topo exited %d: %.300s\n", name, r->exit_code, r->err);
            }
            if (r->exit_code == 2) CU_ASSERT(strstr(r->err, name) != NULL);
            remove(path);
        }
        free(dst);
        free(src);
    }
    printf("\n    %d mutations: %d loaded, %d refused with an error (%d only by the probe); %d runs of brigade topo, "
           "%d crashed\n", loaded + refused, loaded, refused, probe_caught, runs, crashed);
    BRG_ASSERT_EQ_INT(crashed, 0);
#if BRG_HAVE_LIBXML2
    BRG_ASSERT_EQ_INT(probe_caught, 0);
#endif
    CU_ASSERT(refused > 0);
}

int main(int argc, char **argv) {
    /* hwloc reads XML with libxml2 when its plugin is installed (Debian's libhwloc-plugins, which Open MPI
     * pulls in), else with its own minimal parser, the one these crashing files crash. The guard must hold
     * against the worse of the two: use the minimal parser whatever is installed. */
    setenv("HWLOC_LIBXML_IMPORT", "0", 1);
    setenv("HWLOC_NO_LIBXML_IMPORT", "1", 1);
    static const brg_test_case cases[] = {
        {"known_crashes", test_known_crashes},
        {"probe", test_probe},
        {"malformed_documents", test_malformed_documents},
        {"bad_attributes", test_bad_attributes},
        {"bad_structure", test_bad_structure},
        {"tolerated", test_tolerated},
        {"bitmap_syntax", test_bitmap_syntax},
        {"fixtures_unchanged", test_fixtures_unchanged},
        {"mutations", test_mutations},
        {NULL, NULL},
    };
    return brg_test_main(argc, argv, "xml-guard", cases);
}
