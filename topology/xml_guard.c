/* hwloc XML files, checked before hwloc reads them.
 *
 * Debian's hwloc 2.9 reads XML with its minimalistic parser unless libhwloc-plugins is installed (Open MPI
 * pulls it in), whose libxml2 importer then takes over. The minimalistic parser trusts its input: a file cut
 * short after `<topology version="2.0` makes it dereference NULL, a cpuset of ",0" trips an assertion (an
 * abort), and a failed load leaks. A bad file must give an error, never a crash, so three guards stand
 * between the file and hwloc:
 *   1. libxml2 parses the file (where brigade was built with it): malformed XML is reported with its line
 *      and column, and what hwloc reads without checking is checked here: bitmaps, numbers, the sets it
 *      compares through pointers (cpuset with complete_cpuset, nodeset with complete_nodeset), and the
 *      counts it allocates by (a distance matrix's nbobjs against the values it holds);
 *   2. hwloc is handed libxml2's serialization of the document, not the file: well-formed, with every
 *      attribute double-quoted and escaped as the minimalistic parser expects, without comments;
 *   3. hwloc first loads that document in a child process: whatever else crashes it (an input no check
 *      here foresaw) kills the child, and the caller gets an error naming the signal.
 * Only a document that passed all three is loaded in this process. And hwloc's plugins stay loaded for
 * the life of the process (brg__hwloc_pin_plugins), so that nothing of theirs is called once unmapped. */
#include <errno.h>
#include <fcntl.h>
#include <hwloc.h>
#include <poll.h>
#include <pthread.h>
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
#include "json.h"
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
    BRG__CHECK(brg__read_file(path, where, XML_MAX_BYTES, out, size, err));
    if (*size > 0) return BRG_OK;
    free(*out);
    *out = NULL;
    return brg__error_set(err, BRG_ERR_PARSE, "%s%s: empty file, not an hwloc XML topology", where, path);
}

/* ---- checks of what hwloc dereferences ------------------------------------------------------------ */

int brg__decimal_count(const char *s, uint64_t max, uint64_t *value) {
    if (!*s || strlen(s) > 20) return 0;
    for (const char *p = s; *p; p++)
        if (*p < '0' || *p > '9') return 0;
    errno = 0;
    unsigned long long v = strtoull(s, NULL, 10);
    if (errno == ERANGE || v > max) return 0;
    if (value) *value = v;
    return 1;
}

/* hwloc's bitmap syntax (hwloc_bitmap_sscanf): comma-separated words of up to 8 hex digits, each with an
 * optional 0x, optionally after a "0xf...f," prefix that makes the set infinite; or "0xf...f" alone. hwloc
 * writes a zero word as an empty one (",,"), but it sizes the set by the commas after the first character,
 * so a first word without digits (",0") makes it consume one word more than it counted: an assertion. An
 * empty value makes it count commas past the value's end. hwloc itself writes an empty set as "0x0". */
int brg__hwloc_bitmap_ok(const char *s) {
    if (strcmp(s, "0xf...f") == 0) return 1;
    if (strncmp(s, "0xf...f,", 8) == 0) s += 8;
    for (int word = 0;; word++) {
        if (word >= BRG__HWLOC_BITMAP_MAX_WORDS) return 0;
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


static const char *const bitmap_attributes[] = {"cpuset", "complete_cpuset", "online_cpuset", "allowed_cpuset",
                                                "nodeset", "complete_nodeset", "allowed_nodeset",
                                                "initiator_cpuset", NULL};
/* Attributes hwloc reads as numbers (strtoul and friends): junk there is read as 0 today, but a file that
 * has it was not written by hwloc, so it is refused with a clear message rather than half-read. */
static const char *const count_attributes[] = {"os_index", "gp_index", "depth", "cache_size", "cache_linesize",
                                               "cache_associativity", "cache_type", "local_memory", "nbobjs",
                                               "length", "size", "count", "kind", "subkind", "dont_merge",
                                               "relative_depth", "target_obj_gp_index", "initiator_obj_gp_index",
                                               NULL};

static int in_list(const char *name, const char *const *list) {
    for (const char *const *k = list; *k; k++)
        if (strcmp(*k, name) == 0) return 1;
    return 0;
}

typedef struct guard_ctx {
    const char *where, *path;
    brg_error *err;
    int version_major; /* of the <topology> element; 1 when it has no version (hwloc 1.x files) */
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

static int is_element(const xmlNode *node, const char *name) {
    return node && node->type == XML_ELEMENT_NODE && strcmp((const char *)node->name, name) == 0;
}

static int has_attribute(const xmlNode *node, const char *name) {
    return xmlHasProp(node, (const xmlChar *)name) != NULL;
}

/* The value of an attribute as a count (checked by check_attribute before), or 0 when absent. */
static unsigned long long count_attribute(const xmlNode *node, const char *name) {
    xmlChar *value = xmlGetProp(node, (const xmlChar *)name);
    unsigned long long v = value ? strtoull((const char *)value, NULL, 10) : 0;
    xmlFree(value);
    return v;
}

static brg_status check_attribute(const guard_ctx *c, const xmlNode *node, const char *name, const char *value) {
    const char *element = (const char *)node->name;
    if (in_list(name, bitmap_attributes) && !brg__hwloc_bitmap_ok(value)) {
        size_t words = 1;
        for (const char *p = value; *p; p++) words += *p == ',';
        if (words > BRG__HWLOC_BITMAP_MAX_WORDS)
            return guard_fail(c, node, "%s attribute %s has %zu words, more than the %d (%d PUs) brigade reads",
                              element, name, words, BRG__HWLOC_BITMAP_MAX_WORDS, BRG__HWLOC_BITMAP_MAX_WORDS * 32);
        return guard_fail(c, node, "%s attribute %s \"%.60s\" is not an hwloc bitmap (comma-separated 0x hex "
                          "words of up to 8 digits, the first not empty)", element, name, value);
    }
    if (in_list(name, count_attributes) && !brg__decimal_count(value, UINT64_MAX, NULL))
        return guard_fail(c, node, "%s attribute %s \"%.60s\" is not a whole number", element, name, value);
    if (strcmp(name, "nbobjs") == 0 && !brg__decimal_count(value, XML_MAX_DISTANCE_OBJECTS, NULL))
        return guard_fail(c, node, "%s attribute nbobjs %s is more than the %d objects a distance matrix may "
                          "relate", element, value, XML_MAX_DISTANCE_OBJECTS);
    if (strcmp(name, "length") == 0 && !brg__decimal_count(value, (uint64_t)XML_MAX_BYTES, NULL))
        return guard_fail(c, node, "%s attribute length %s is longer than the file may be", element, value);
    return BRG_OK;
}

/* hwloc compares sibling objects by complete_cpuset and, in 1.x files, a NUMA node's complete_cpuset with
 * its parent's, without checking that they exist: an object with one set of a pair and not the other
 * makes it read through NULL. (hwloc 1.7 wrote I/O Groups with a cpuset alone; hwloc drops those.) */
static brg_status check_object_sets(const guard_ctx *c, const xmlNode *node) {
    xmlChar *type = xmlGetProp(node, (const xmlChar *)"type");
    char name[32];
    snprintf(name, sizeof name, "%s", type ? (const char *)type : "");
    xmlFree(type);
    int old_group = c->version_major < 2 && strcmp(name, "Group") == 0 && is_element(node->parent, "object");
    static const char *const pairs[][2] = {{"cpuset", "complete_cpuset"}, {"nodeset", "complete_nodeset"}};
    for (int k = 0; k < 2 && !old_group; k++) {
        int first = has_attribute(node, pairs[k][0]), second = has_attribute(node, pairs[k][1]);
        if (first != second)
            return guard_fail(c, node, "%s object has %s but no %s (hwloc needs both)", name,
                              pairs[k][first ? 0 : 1], pairs[k][first ? 1 : 0]);
    }
    if (c->version_major < 2 && strcmp(name, "NUMANode") == 0 && !has_attribute(node, "cpuset"))
        return guard_fail(c, node, "NUMANode object without a cpuset (hwloc 1.x files give NUMA nodes one)");
    if (has_attribute(node, "cpuset") && is_element(node->parent, "object") && !has_attribute(node->parent, "cpuset"))
        return guard_fail(c, node, "%s object has a cpuset but its parent object has none", name);
    return BRG_OK;
}

/* Whitespace-separated words of an element's text. */
static unsigned long long word_count(const xmlNode *node) {
    xmlChar *text = xmlNodeGetContent(node);
    unsigned long long words = 0;
    int in_word = 0;
    for (const xmlChar *p = text; p && *p; p++) {
        int space = *p == ' ' || *p == '\t' || *p == '\n' || *p == '\r';
        words += !space && !in_word;
        in_word = !space;
    }
    xmlFree(text);
    return words;
}

/* distances2 / distances2hetero (hwloc 2.x): hwloc allocates nbobjs indexes and nbobjs^2 values from the
 * attribute before it reads them; the children must hold exactly that many, each with a length that is
 * its text's. */
static brg_status check_distances2(const guard_ctx *c, const xmlNode *node) {
    const char *element = (const char *)node->name;
    if (!has_attribute(node, "nbobjs")) return guard_fail(c, node, "%s without an nbobjs attribute", element);
    unsigned long long objects = count_attribute(node, "nbobjs"), indexes = 0, values = 0;
    for (const xmlNode *child = node->children; child; child = child->next) {
        int is_indexes = is_element(child, "indexes"), is_values = is_element(child, "u64values");
        if (!is_indexes && !is_values) continue;
        if (!has_attribute(child, "length"))
            return guard_fail(c, child, "%s %s without a length attribute", element, (const char *)child->name);
        xmlChar *text = xmlNodeGetContent(child);
        size_t length = text ? strlen((const char *)text) : 0;
        xmlFree(text);
        if (count_attribute(child, "length") != length)
            return guard_fail(c, child, "%s %s length %llu, but its text is %zu characters long", element,
                              (const char *)child->name, count_attribute(child, "length"), length);
        *(is_indexes ? &indexes : &values) += word_count(child);
    }
    if (indexes != objects)
        return guard_fail(c, node, "%s nbobjs %llu, but it lists %llu indexes", element, objects, indexes);
    if (values != objects * objects)
        return guard_fail(c, node, "%s nbobjs %llu needs %llu values (nbobjs squared), but it has %llu", element,
                          objects, objects * objects, values);
    return BRG_OK;
}

/* distances (hwloc 1.x): nbobjs^2 latency children, each with a value. */
static brg_status check_distances1(const guard_ctx *c, const xmlNode *node) {
    unsigned long long objects = count_attribute(node, "nbobjs"), latencies = 0;
    for (const xmlNode *child = node->children; child; child = child->next) {
        if (!is_element(child, "latency")) continue;
        if (!has_attribute(child, "value")) return guard_fail(c, child, "distances latency without a value");
        latencies++;
    }
    if (latencies != objects * objects)
        return guard_fail(c, node, "distances nbobjs %llu needs %llu latency elements (nbobjs squared), but it has "
                          "%llu", objects, objects * objects, latencies);
    return BRG_OK;
}

static brg_status check_element(const guard_ctx *c, const xmlNode *node) {
    for (const xmlAttr *a = node->properties; a; a = a->next) {
        xmlChar *value = xmlNodeGetContent((const xmlNode *)a);
        brg_status s = check_attribute(c, node, (const char *)a->name, value ? (const char *)value : "");
        xmlFree(value);
        BRG__CHECK(s);
    }
    const char *name = (const char *)node->name;
    if (strcmp(name, "object") == 0) {
        if (!has_attribute(node, "type")) return guard_fail(c, node, "object without a type attribute");
        return check_object_sets(c, node);
    }
    if (strcmp(name, "info") == 0 && (!has_attribute(node, "name") || !has_attribute(node, "value")))
        return guard_fail(c, node, "info element without a name and a value");
    if (strcmp(name, "distances2") == 0 || strcmp(name, "distances2hetero") == 0) return check_distances2(c, node);
    if (strcmp(name, "distances") == 0) return check_distances1(c, node);
    return BRG_OK;
}

/* Every element below root, without recursion (libxml2 bounds the depth at 256 without XML_PARSE_HUGE,
 * but a loop needs no such bound). */
static brg_status check_tree(const guard_ctx *c, const xmlNode *root) {
    const xmlNode *node = root;
    while (node) {
        if (node->type == XML_ENTITY_REF_NODE)
            return guard_fail(c, node->parent, "entity reference &%s; (hwloc files use none)", node->name);
        if (node->type == XML_CDATA_SECTION_NODE)
            return guard_fail(c, node->parent, "CDATA section (hwloc files use none)");
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

/* Comments and processing instructions are XML hwloc's minimalistic parser does not know: they go, so
 * that a file annotated by hand still loads. Recursive: libxml2 has bounded the depth at 256. */
static void drop_comments(xmlNodePtr node) {
    while (node) {
        xmlNodePtr next = node->next;
        if (node->type == XML_COMMENT_NODE || node->type == XML_PI_NODE) {
            xmlUnlinkNode(node);
            xmlFreeNode(node);
        } else if (node->type == XML_ELEMENT_NODE) {
            drop_comments(node->children);
        }
        node = next;
    }
}

/* libxml2's first error (the later ones follow from it), kept per parse: no global handler. */
typedef struct first_error {
    int set, line, column;
    char message[256];
} first_error;

static void keep_first_error(void *data, xmlErrorPtr e) {
    first_error *first = ((xmlParserCtxtPtr)data)->_private;
    if (!first || first->set || !e || e->level < XML_ERR_ERROR) return;
    first->set = 1;
    first->line = e->line;
    first->column = e->int2;
    snprintf(first->message, sizeof first->message, "%s", e->message ? e->message : "not well-formed");
    size_t n = strlen(first->message);
    while (n > 0 && (first->message[n - 1] == '\n' || first->message[n - 1] == ' ')) first->message[--n] = '\0';
}

/* " (at \"...\")": the text where libxml2 stopped (line and column counted from 1), printable ASCII only. */
static void text_at(const char *text, size_t size, int line, int column, char *buf, size_t buf_size) {
    buf[0] = '\0';
    size_t at = 0;
    for (int l = 1; l < line && at < size; at++) l += text[at] == '\n';
    if (line < 1 || column < 1 || at >= size) return;
    for (int k = 1; k < column && at < size && text[at] != '\n'; k++) at++;
    char quoted[40];
    size_t n = 0;
    for (; at < size && n < 24 && text[at] != '\n'; at++) quoted[n++] = text[at] >= ' ' && text[at] < 127 ? text[at] : '?';
    quoted[n] = '\0';
    snprintf(buf, buf_size, n ? " (at \"%s\")" : " (at the end of the file)", quoted);
}

static pthread_once_t libxml2_once = PTHREAD_ONCE_INIT;
static void libxml2_init(void) { xmlInitParser(); }

/* libxml2 reports some errors (an encoding it cannot convert) through the thread's generic handler rather
 * than the parser's: the structured error that follows says the same, so these are dropped, not printed. */
static void drop_generic_error(void *data, const char *fmt, ...) { (void)data, (void)fmt; }

/* Parses text with libxml2, checks it, and returns its serialization (UTF-8, malloc'd). */
static brg_status canonical_document(const char *text, size_t size, const char *where, const char *path, char **out,
                                     int *out_size, brg_error *err) {
    guard_ctx c = {where, path, err, 1};
    pthread_once(&libxml2_once, libxml2_init);
    xmlParserCtxtPtr ctxt = xmlNewParserCtxt();
    if (!ctxt) return brg__error_set(err, BRG_ERR_OUT_OF_MEMORY, "%s%s: out of memory", where, path);
    first_error first = {0};
    ctxt->_private = &first;
    ctxt->sax->serror = keep_first_error; /* called with ctxt; libxml2 then prints nothing itself */
    /* No network, no DTD loading, no entity substitution; XML_PARSE_HUGE stays off, so libxml2's limits
     * on depth, name and text sizes and on entity amplification hold. BIG_LINES: line numbers in messages
     * past 65535 too. */
    int options = XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING | XML_PARSE_BIG_LINES;
    /* The generic handler is the thread's: ours for this parse, the caller's put back after. */
    xmlGenericErrorFunc caller_handler = xmlGenericError;
    void *caller_context = xmlGenericErrorContext;
    xmlSetGenericErrorFunc(NULL, drop_generic_error);
    xmlDocPtr doc = xmlCtxtReadMemory(ctxt, text, (int)size, path, NULL, options);
    xmlSetGenericErrorFunc(caller_context, caller_handler);
    brg_status s = BRG_OK;
    if (!doc || !ctxt->wellFormed) {
        const xmlError *e = xmlCtxtGetLastError(ctxt);
        if (!first.set && e) keep_first_error(ctxt, (xmlErrorPtr)e);
        char at[64];
        text_at(text, size, first.line, first.column, at, sizeof at);
        s = brg__error_set(err, BRG_ERR_PARSE, "%s%s:%d:%d: malformed XML: %s%s", where, path, first.line, first.column,
                           first.set ? first.message : "not well-formed", at);
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
        else if (version)
            c.version_major = (int)major;
        xmlFree(version);
    }
    if (s == BRG_OK) s = check_tree(&c, root);
    if (s == BRG_OK) {
        drop_comments(doc->children);
        xmlChar *dump = NULL;
        int n = 0;
        xmlDocDumpMemoryEnc(doc, &dump, &n, "UTF-8");
        char *copy = dump && n > 0 ? brg__malloc((size_t)n + 1) : NULL;
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

/* ---- the probe in a child process -------------------------------------------------------------------
 * Why keep it when the checks above pass: they cover what hwloc 2.9 is known to trust (the crashes found
 * and their neighbours), not every path of its importer and of the topology core behind it, and a crash
 * there would take the calling program (a planner, a training job) down with it. The probe costs one fork
 * and one more load of a document already in memory, once per file read: about 3 ms for the fixture
 * machines in the sanitizer build, more in a process with a large resident set (fork copies its page
 * tables), which is why topologies are best loaded at start-up. It runs only on a document the checks
 * passed, and this process loads it only after the child has. A child that hangs is killed after
 * PROBE_SECONDS: in a program with other threads, the child runs only hwloc on memory it was handed
 * (glibc's malloc and jemalloc are fork-safe), but a lock another thread held at the fork, a stdio one,
 * would stop it. */

/* hwloc loads its plugins with the first topology of the process and unloads them with the last one
 * destroyed. Its libxml2 importer (the hwloc_xml_libxml plugin) points libxml2's generic error handler of
 * the thread at a function of the plugin and never puts it back: once the plugin is unloaded, the next
 * error libxml2 reports through that handler (in the guard's own parse of a later file, or in the
 * application's use of libxml2) jumps into unmapped memory. One topology, created once and never
 * destroyed, keeps the plugins loaded as long as the process lives; it holds no machine (it is never
 * loaded). Pinned before the first probe, the plugins are also already loaded in the probe's child, which
 * then needs no dlopen (not safe after a fork in a program with threads). */
static pthread_once_t plugins_once = PTHREAD_ONCE_INIT;
static hwloc_topology_t plugins_pin;
static void pin_plugins(void) {
    if (hwloc_topology_init(&plugins_pin) != 0) plugins_pin = NULL;
}

void brg__hwloc_pin_plugins(void) { pthread_once(&plugins_once, pin_plugins); }

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

/* The first line of what the child printed that says something (not a rule of '=' or '*'), for the
 * message. */
static void first_line(const char *text, char *buf, size_t size) {
    buf[0] = '\0';
    for (const char *line = text; *line; line += strcspn(line, "\n") + (line[strcspn(line, "\n")] == '\n')) {
        size_t n = strcspn(line, "\n");
        size_t skip = strspn(line, " *=-\t");
        if (skip >= n) continue;
        line += skip;
        n -= skip;
        if (n >= size) n = size - 1;
        memcpy(buf, line, n);
        buf[n] = '\0';
        return;
    }
}

static void close_pair(int fds[2]) {
    if (fds[0] >= 0) close(fds[0]);
    if (fds[1] >= 0) close(fds[1]);
}

brg_status brg__hwloc_probe(const char *buffer, int size, const char *where, const char *path, brg_error *err) {
    /* said: the child's stderr. verdict: one byte, 'K' loaded or 'F' refused, written before it exits, so
     * the outcome is known even where the program ignores SIGCHLD and the exit status is lost. */
    int said[2] = {-1, -1}, verdict[2] = {-1, -1};
    if (pipe2(said, O_CLOEXEC) != 0 || pipe2(verdict, O_CLOEXEC) != 0) {
        int e = errno;
        close_pair(said);
        close_pair(verdict);
        return brg__error_set(err, BRG_ERR_IO, "%s%s: cannot make a pipe to check the file: %s", where, path,
                              strerror(e));
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close_pair(said);
        close_pair(verdict);
        return brg__error_set(err, BRG_ERR_IO, "%s%s: cannot fork to check the file: %s", where, path, strerror(e));
    }
    if (pid == 0) {
        /* The child: hwloc's complaints (and a sanitizer's report) go to the pipe; _exit skips atexit
         * handlers and leak checks, which belong to the parent. */
        dup2(said[1], STDERR_FILENO);
        /* A fault kills the child by its signal, even where a sanitizer would catch it and exit(1). */
        const int faults[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
        for (size_t k = 0; k < sizeof faults / sizeof faults[0]; k++) signal(faults[k], SIG_DFL);
        hwloc_topology_t hw;
        int rc = hwloc_load_buffer(&hw, buffer, size);
        if (rc == 0) hwloc_topology_destroy(hw);
        ssize_t w = write(verdict[1], rc == 0 ? "K" : "F", 1);
        _exit(rc == 0 && w == 1 ? 0 : 1);
    }
    close(said[1]);
    close(verdict[1]);
    char text[2048];
    size_t used = 0;
    double deadline = brg__now_seconds() + PROBE_SECONDS;
    int timed_out = 0;
    for (;;) { /* until the child has closed its end: it has exited (or was killed) */
        int left_ms = (int)((deadline - brg__now_seconds()) * 1000.0);
        if (left_ms <= 0) {
            timed_out = 1;
            break;
        }
        struct pollfd p = {.fd = said[0], .events = POLLIN};
        int ready = poll(&p, 1, left_ms);
        if (ready < 0 && errno == EINTR) continue;
        if (ready <= 0) continue;
        char chunk[512];
        ssize_t n = read(said[0], chunk, sizeof chunk);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        size_t take = (size_t)n < sizeof text - 1 - used ? (size_t)n : sizeof text - 1 - used;
        memcpy(text + used, chunk, take);
        used += take;
    }
    if (timed_out) kill(pid, SIGKILL);
    int status = 0;
    pid_t waited;
    do waited = waitpid(pid, &status, 0);
    while (waited < 0 && errno == EINTR);
    char outcome = 0;
    if (!timed_out && read(verdict[0], &outcome, 1) != 1) outcome = 0;
    close(said[0]);
    close(verdict[0]);
    text[used] = '\0';
    char line[300];
    first_line(text, line, sizeof line);
    if (timed_out)
        return brg__error_set(err, BRG_ERR_PARSE, "%s%s: hwloc did not finish reading this file in %d s", where, path,
                              PROBE_SECONDS);
    int exited_ok = waited == pid ? WIFEXITED(status) && WEXITSTATUS(status) == 0 && outcome == 'K' : outcome == 'K';
    if (exited_ok) return BRG_OK;
    if (waited == pid && WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        const char *abbrev = sigabbrev_np(sig);
        return brg__error_set(err, BRG_ERR_PARSE, "%s%s: hwloc crashed reading this file (signal %d, SIG%s: %s); it is "
                              "malformed%s%s", where, path, sig, abbrev ? abbrev : "?", strsignal(sig),
                              line[0] ? ": " : "", line);
    }
    if (outcome != 'F')
        return brg__error_set(err, BRG_ERR_PARSE, "%s%s: hwloc crashed reading this file; it is malformed%s%s", where,
                              path, line[0] ? ": " : "", line);
    if (line[0])
        return brg__error_set(err, BRG_ERR_PARSE, "%s%s: not a valid hwloc XML topology (hwloc could not load it: %s)",
                              where, path, line);
    return brg__error_set(err, BRG_ERR_PARSE, "%s%s: not a valid hwloc XML topology (hwloc could not load it; "
                          "'HWLOC_XML_VERBOSE=1 lstopo-no-graphics -i %s' shows why)", where, path, path);
}

/* ---- the whole load -------------------------------------------------------------------------------- */

brg_status brg__hwloc_load_xml(hwloc_topology_t *out, const char *path, const char *where, brg_error *err) {
    char *text = NULL, *document = NULL;
    size_t size = 0;
    brg__hwloc_pin_plugins();
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
