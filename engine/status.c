#include "brigade/status.h"

#include "internal.h"

#define BRG__STR(x) #x
#define BRG__XSTR(x) BRG__STR(x)

const char *brg_status_string(brg_status s) {
    switch (s) {
#define BRG__STATUS_CASE(name, value, text) \
    case BRG_##name:                        \
        return text;
        BRG_STATUS_MAP(BRG__STATUS_CASE)
#undef BRG__STATUS_CASE
    }
    return "unknown status";
}

const char *brg_status_name(brg_status s) {
    switch (s) {
#define BRG__STATUS_CASE(name, value, text) \
    case BRG_##name:                        \
        return "BRG_" #name;
        BRG_STATUS_MAP(BRG__STATUS_CASE)
#undef BRG__STATUS_CASE
    }
    return "BRG_UNKNOWN";
}

const char *brg_version(void) {
    return BRG__XSTR(BRG_VERSION_MAJOR) "." BRG__XSTR(BRG_VERSION_MINOR) "." BRG__XSTR(BRG_VERSION_PATCH);
}

brg_status brg__error_set(brg_error *err, brg_status status, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->status = status;
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return status;
}

brg_status brg__message_set(char *buf, size_t size, brg_status status, const char *fmt, ...) {
    if (buf && size) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, size, fmt, ap);
        va_end(ap);
    }
    return status;
}
