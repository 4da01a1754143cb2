/* hwloc XML files, checked before hwloc reads them.
 *
 * Debian's hwloc 2.9 is built without libxml2, so it reads XML with its minimalistic parser, which trusts
 * its input: a file cut short after `<topology version="2.0` makes it dereference NULL, a cpuset of ",0"
 * trips an assertion (an abort), and a failed load leaks. A bad file must give an error, never a crash, so
 * three guards stand between the file and hwloc:
 *   1. libxml2 parses the file (where brigade was built with it): malformed XML is reported with its line
 *      and column, and the attributes hwloc reads without checking (bitmaps, counts) are checked here;
 *   2. hwloc is handed libxml2's serialization of the document, not the file: well-formed, with every
 *      attribute double-quoted and escaped as the minimalistic parser expects;
 *   3. hwloc first loads that document in a child process: whatever else crashes it (an input no check
 *      here foresaw) kills the child, and the caller gets an error naming the signal.
 * Only a document that passed all three is loaded in this process. */
#include <errno.h>
#include <fcntl.h>
#include <hwloc.h>
#include <poll.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "brigade_config.h"
#include "topology_internal.h"

#if BRG_HAVE_LIBXML2
#include <libxml/parser.h>
#include <libxml/tree.h>
#endif

#define XML_MAX_BYTES (INT64_C(64) << 20)
#define PROBE_SECONDS 30
/* Most objects a distances matrix may relate (hwloc allocates nbobjs^2 values). */
#define XML_MAX_DISTANCE_OBJECTS 65536

/* ---- reading the file --------------------------------------------------------------------------- */

static brg_status read_file(const char *path, const char *where, char **out, size_t *size, brg_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return brg__error_set(err, BRG_ERR_IO, "%s%s: cannot open: %s", where, path, strerror(errno));
    size_t capacity = 1 << 16, used = 0;
    char *text = malloc(capacity);
    brg_status s = BRG_OK;
    while (text) {
        if (used + 1 == capacity) {
            if ((int64_t)capacity >= XML_MAX_BYTES) {
                s = brg__error_set(err, BRG_ERR_PARSE, "%s%s: larger than %lld MiB, more than any hwloc topology",
                                   where, path, (long long)(XML_MAX_BYTES >> 20));
                break;
            }
            char *grown = realloc(text, capacity * 2);
            if (!grown) break;
            text = grown;
            capacity *= 2;
        }
        size_t n = fread(text + used, 1, capacity - 1 - used, f);
        used += n;
        if (n == 0) break;
    }
    if (!text) s = brg__error_set(err, BRG_ERR_OUT_OF_MEMORY, "%s%s: out of memory", where, path);
    else if (s == BRG_OK && ferror(f)) s = brg__error_set(err, BRG_ERR_IO, "%s%s: cannot read: %s", where, path, strerror(errno));
    else if (s == BRG_OK && used == 0) s = brg__error_set(err, BRG_ERR_PARSE, "%s%s: empty file, not an hwloc XML topology", where, path);
    fclose(f);
    if (s != BRG_OK) {
        free(text);
        return s;
    }
    text[used] = '\0';
    *out = text;
    *size = used;
    return BRG_OK;
}

/* ---- checks of what hwloc dereferences ------------------------------------------------------------ */

/* hwloc's bitmap syntax (hwloc_bitmap_sscanf): comma-separated words of up to 8 hex digits, each with an
 * optional 0x, optionally after a "0xf...f," prefix that makes the set infinite; or "0xf...f" alone. hwloc
 * writes a zero word as an empty one (",,"), but it sizes the set by the commas after the first character,
 * so a first word without digits (",0") makes it consume one word more than it counted: an assertion. */
int brg__hwloc_bitmap_ok(const char *s) {
    if (!*s || strcmp(s, "0xf...f") == 0) return 1;
    if (strncmp(s, "0xf...f,", 8) == 0) s += 8;
    for (int word = 0;; word++) {
        int prefix = s[0] == '0' && (s[1] == 'x' || s[1] == 'X');
        s += prefix ? 2 : 0;
        int digits = 0;
        while ((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f') || (*s >= 'A' && *s <= 'F')) {
            s++;
            digits++;
        }
        if ((digits < 1 && (word == 0 || prefix)) || digits > 8) return 0; /* "0x" alone: hwloc's strtoul stops at x */
        if (*s == '\0') return 1;
        if (*s != ',') return 0;
        s++;
    }
}

#if BRG_HAVE_LIBXML2

/* A plain decimal number of at most 20 digits, at most max. */
static int count_ok(const char *s, unsigned long long max) {
    if (!*s || strlen(s) > 20) return 0;
    for (const char *p = s; *p; p++)
        if (*p < '0' || *p > '9') return 0;
    errno = 0;
    unsigned long long v = strtoull(s, NULL, 10);
    return errno != ERANGE && v <= max;
}

static const char *const bitmap_attributes[] = {"cpuset", "complete_cpuset", "online_cpuset", "allowed_cpuset",
                                                "nodeset", "complete_nodeset", "allowed_nodeset", NULL};
/* Attributes hwloc reads as numbers (strtoul and friends): junk there is read as 0 today, but a file that
 * has it was not written by hwloc, so it is refused with a clear message rather than half-read. */
static const char *const count_attributes[] = {"os_index", "gp_index", "depth", "cache_size", "cache_linesize",
                                               "cache_associativity", "cache_type", "local_memory", "nbobjs",
                                               "length", "size", "count", "kind", NULL};

static int in_list(const char *name, const char *const *list) {
    for (const char *const *k = list; *k; k++)
        if (strcmp(*k, name) == 0) return 1;
    return 0;
}

typedef struct guard_ctx {
    const char *where, *path;
    brg_error *err;
} guard_ctx;

BRG__PRINTF(3, 4)
static brg_status guard_fail(const guard_ctx *c, const xmlNode *node, const char *fmt, ...) {
    char message[BRG_ERROR_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    return brg__error_set(c->err, BRG_ERR_PARSE, "%s%s:%ld: %s", c->where, c->path, node ? xmlGetLineNo(node) : 0L,
                          message);
}

static brg_status check_attribute(const guard_ctx *c, const xmlNode *node, const char *name, const char *value) {
    const char *element = (const char *)node->name;
    if (in_list(name, bitmap_attributes) && !brg__hwloc_bitmap_ok(value))
        return guard_fail(c, node, "%s attribute %s \"%.60s\" is not an hwloc bitmap (comma-separated 0x hex "
                          "words of up to 8 digits, the first not empty)", element, name, value);
    if (in_list(name, count_attributes) && !count_ok(value, UINT64_MAX))
        return guard_fail(c, node, "%s attribute %s \"%.60s\" is not a whole number", element, name, value);
    if (strcmp(name, "nbobjs") == 0 && !count_ok(value, XML_MAX_DISTANCE_OBJECTS))
        return guard_fail(c, node, "%s attribute nbobjs %s is more than the %d objects a distance matrix may "
                          "relate", element, value, XML_MAX_DISTANCE_OBJECTS);
    if (strcmp(name, "length") == 0 && !count_ok(value, (unsigned long long)XML_MAX_BYTES))
        return guard_fail(c, node, "%s attribute length %s is longer than the file may be", element, value);
    return BRG_OK;
}

static brg_status check_element(const guard_ctx *c, const xmlNode *node) {
    for (const xmlAttr *a = node->properties; a; a = a->next) {
        xmlChar *value = xmlNodeGetContent((const xmlNode *)a);
        brg_status s = check_attribute(c, node, (const char *)a->name, value ? (const char *)value : "");
        xmlFree(value);
        BRG__CHECK(s);
    }
    if (strcmp((const char *)node->name, "object") == 0 && !xmlHasProp(node, (const xmlChar *)"type"))
        return guard_fail(c, node, "object without a type attribute");
    if (strcmp((const char *)node->name, "info") == 0 &&
        (!xmlHasProp(node, (const xmlChar *)"name") || !xmlHasProp(node, (const xmlChar *)"value")))
        return guard_fail(c, node, "info element without a name and a value");
    return BRG_OK;
}

/* Every element below root, without recursion (libxml2 bounds the depth at 256 without XML_PARSE_HUGE,
 * but a loop needs no such bound). */
static brg_status check_tree(const guard_ctx *c, const xmlNode *root) {
    const xmlNode *node = root;
    while (node) {
        if (node->type == XML_ENTITY_REF_NODE)
            return guard_fail(c, node->parent, "entity reference &%s; (hwloc files use none)", node->name);
        if (node->type == XML_ELEMENT_NODE) BRG__CHECK(check_element(c, node));
        if (node->type == XML_ELEMENT_NODE && node->children) {
            node = node->children;
            continue;
        }
        while (node && node != root && !node->next) node = node->parent;
        if (!node || node == root) break;
        node = node->next;
    }
    return BRG_OK;
}

/* Parses text with libxml2, checks it, and returns its serialization (UTF-8, malloc'd). */
static brg_status canonical_document(const char *text, size_t size, const char *where, const char *path, char **out,
                                     int *out_size, brg_error *err) {
    guard_ctx c = {where, path, err};
    xmlParserCtxtPtr ctxt = xmlNewParserCtxt();
    if (!ctxt) return brg__error_set(err, BRG_ERR_OUT_OF_MEMORY, "%s%s: out of memory", where, path);
    /* No network, no DTD loading, no entity substitution; XML_PARSE_HUGE stays off, so libxml2's limits
     * on depth, name and text sizes and on entity amplification hold. */
    int options = XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING;
    xmlDocPtr doc = xmlCtxtReadMemory(ctxt, text, (int)size, path, NULL, options);
    brg_status s = BRG_OK;
    if (!doc || !ctxt->wellFormed) {
        const xmlError *e = xmlCtxtGetLastError(ctxt);
        char message[256] = "not well-formed";
        if (e && e->message) {
            snprintf(message, sizeof message, "%s", e->message);
            size_t n = strlen(message);
            while (n > 0 && (message[n - 1] == '\n' || message[n - 1] == ' ')) message[--n] = '\0';
        }
        s = brg__error_set(err, BRG_ERR_PARSE, "%s%s:%d:%d: malformed XML: %s", where, path, e ? e->line : 0,
                           e ? e->int2 : 0, message);
    }
    xmlNodePtr root = s == BRG_OK ? xmlDocGetRootElement(doc) : NULL;
    if (s == BRG_OK && (!root || strcmp((const char *)root->name, "topology") != 0))
        s = guard_fail(&c, root, "the root element is <%s>, not <topology>: not an hwloc XML topology",
                       root ? (const char *)root->name : "");
    if (s == BRG_OK && doc->intSubset && doc->intSubset->entities)
        s = guard_fail(&c, root, "the document declares entities (hwloc files declare none)");
    if (s == BRG_OK) {
        xmlChar *version = xmlGetProp(root, (const xmlChar *)"version");
        unsigned major, minor;
        char tail;
        if (version && sscanf((const char *)version, "%u.%u%c", &major, &minor, &tail) != 2)
            s = guard_fail(&c, root, "topology version \"%.20s\" is not MAJOR.MINOR", (const char *)version);
        xmlFree(version);
    }
    if (s == BRG_OK) s = check_tree(&c, root);
    if (s == BRG_OK) {
        xmlChar *dump = NULL;
        int n = 0;
        xmlDocDumpMemoryEnc(doc, &dump, &n, "UTF-8");
        char *copy = dump && n > 0 ? malloc((size_t)n + 1) : NULL;
        if (!copy) s = brg__error_set(err, BRG_ERR_OUT_OF_MEMORY, "%s%s: out of memory", where, path);
        else {
            memcpy(copy, dump, (size_t)n);
            copy[n] = '\0';
            *out = copy;
            *out_size = n + 1; /* hwloc's buffer length counts the terminating NUL */
        }
        xmlFree(dump);
    }
    xmlFreeDoc(doc);
    xmlFreeParserCtxt(ctxt);
    return s;
}

#endif /* BRG_HAVE_LIBXML2 */

/* ---- the probe in a child process ------------------------------------------------------------------- */

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int hwloc_load_buffer(hwloc_topology_t *out, const char *buffer, int size) {
    hwloc_topology_t hw;
    if (hwloc_topology_init(&hw) != 0) return -1;
    hwloc_topology_set_io_types_filter(hw, HWLOC_TYPE_FILTER_KEEP_IMPORTANT);
    if (hwloc_topology_set_xmlbuffer(hw, buffer, size) != 0 || hwloc_topology_load(hw) != 0) {
        hwloc_topology_destroy(hw);
        return -1;
    }
    *out = hw;
    return 0;
}

/* The first line of what the child printed, for the message. */
static void first_line(const char *text, char *buf, size_t size) {
    while (*text == '\n' || *text == ' ') text++;
    size_t n = strcspn(text, "\n");
    if (n >= size) n = size - 1;
    memcpy(buf, text, n);
    buf[n] = '\0';
}

brg_status brg__hwloc_probe(const char *buffer, int size, const char *where, const char *path, brg_error *err) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0)
        return brg__error_set(err, BRG_ERR_IO, "%s%s: cannot make a pipe to check the file: %s", where, path,
                              strerror(errno));
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return brg__error_set(err, BRG_ERR_IO, "%s%s: cannot fork to check the file: %s", where, path, strerror(errno));
    }
    if (pid == 0) {
        /* The child: hwloc's complaints (and a sanitizer's report) go to the pipe; _exit skips atexit
         * handlers and leak checks, which belong to the parent. */
        dup2(fds[1], STDERR_FILENO);
        /* A fault kills the child by its signal, even where a sanitizer would catch it and exit(1). */
        const int faults[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
        for (size_t k = 0; k < sizeof faults / sizeof faults[0]; k++) signal(faults[k], SIG_DFL);
        hwloc_topology_t hw;
        int rc = hwloc_load_buffer(&hw, buffer, size);
        if (rc == 0) hwloc_topology_destroy(hw);
        _exit(rc == 0 ? 0 : 1);
    }
    close(fds[1]);
    char said[2048];
    size_t used = 0;
    double deadline = now_seconds() + PROBE_SECONDS;
    int status = 0, done = 0, timed_out = 0;
    for (;;) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid) {
            done = 1;
        }
        struct pollfd p = {.fd = fds[0], .events = POLLIN};
        int ready = poll(&p, 1, done ? 0 : 20);
        if (ready > 0) {
            char chunk[512];
            ssize_t n = read(fds[0], chunk, sizeof chunk);
            if (n > 0) {
                size_t take = (size_t)n < sizeof said - 1 - used ? (size_t)n : sizeof said - 1 - used;
                memcpy(said + used, chunk, take);
                used += take;
                continue;
            }
        }
        if (done) break;
        if (now_seconds() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            timed_out = 1;
            break;
        }
    }
    close(fds[0]);
    said[used] = '\0';
    char line[300];
    first_line(said, line, sizeof line);
    if (timed_out)
        return brg__error_set(err, BRG_ERR_PARSE, "%s%s: hwloc did not finish reading this file in %d s", where, path,
                              PROBE_SECONDS);
    if (WIFSIGNALED(status))
        return brg__error_set(err, BRG_ERR_PARSE, "%s%s: hwloc crashed reading this file (signal %d: %s); it is "
                              "malformed%s%s", where, path, WTERMSIG(status), strsignal(WTERMSIG(status)),
                              line[0] ? ": " : "", line);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return brg__error_set(err, BRG_ERR_PARSE, "%s%s: not a valid hwloc XML topology (hwloc could not load it%s%s)",
                              where, path, line[0] ? ": " : "", line);
    return BRG_OK;
}

/* ---- the whole load -------------------------------------------------------------------------------- */

brg_status brg__hwloc_load_xml(hwloc_topology_t *out, const char *path, const char *where, brg_error *err) {
    char *text = NULL, *document = NULL;
    size_t size = 0;
    BRG__CHECK(read_file(path, where, &text, &size, err));
    int document_size = 0;
    brg_status s = BRG_OK;
#if BRG_HAVE_LIBXML2
    s = canonical_document(text, size, where, path, &document, &document_size, err);
    free(text);
#else
    /* Without libxml2, the probe alone stands between the file and a crash. */
    if (size > INT32_MAX - 1) s = brg__error_set(err, BRG_ERR_PARSE, "%s%s: too large", where, path);
    document = text;
    document_size = (int)size + 1;
#endif
    if (s == BRG_OK) s = brg__hwloc_probe(document, document_size, where, path, err);
    if (s == BRG_OK && hwloc_load_buffer(out, document, document_size) != 0)
        s = brg__error_set(err, BRG_ERR_PARSE, "%s%s: not a valid hwloc XML topology (hwloc could not load it; "
                           "'HWLOC_XMLFILE=%s lstopo-no-graphics' shows why)", where, path, path);
    free(document);
    return s;
}
