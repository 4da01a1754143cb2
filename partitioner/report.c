/* The review report: what goes where, what it costs, what binds, and how the plan compares with the
 * splits users would otherwise pick. Text for the terminal, Markdown with SVG pictures for a review. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "partitioner_internal.h"
#include "report_internal.h"

/* ---- a growing string ----------------------------------------------------------------------------- */

void brg__sb_printf(brg__sb *b, const char *fmt, ...) {
    if (b->failed) return;
    for (;;) {
        size_t room = b->cap - b->len;
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->data ? b->data + b->len : NULL, b->data ? room : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = 1;
            return;
        }
        if (b->data && (size_t)n < room) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? 2 * b->cap : 4096;
        while (cap < b->len + (size_t)n + 1) cap *= 2;
        char *grown = brg__realloc(b->data, cap);
        if (!grown) {
            b->failed = 1;
            return;
        }
        b->data = grown;
        b->cap = cap;
    }
}

static void thousands(double v, char *buf, size_t size) {
    char digits[64];
    snprintf(digits, sizeof digits, "%.0f", v);
    size_t n = strlen(digits), out = 0;
    for (size_t i = 0; i < n && out + 2 < size; i++) {
        buf[out++] = digits[i];
        size_t left = n - 1 - i;
        if (left && left % 3 == 0 && digits[i] != '-') buf[out++] = ',';
    }
    buf[out] = '\0';
}

static void count_text(double v, char *buf, size_t size) {
    if (v >= 1e9) snprintf(buf, size, "%.2f B", v / 1e9);
    else if (v >= 1e6) snprintf(buf, size, "%.1f M", v / 1e6);
    else if (v >= 1e3) snprintf(buf, size, "%.1f k", v / 1e3);
    else snprintf(buf, size, "%.0f", v);
}

/* "409.4 TFLOP/s", "31.2 GFLOP/s" */
static void flops_rate(double tflops, char *buf, size_t size) {
    if (tflops >= 1.0) snprintf(buf, size, "%.1f TFLOP/s", tflops);
    else snprintf(buf, size, "%.1f GFLOP/s", tflops * 1e3);
}

static int estimated_peak(const brg_plan *plan) {
    return strcmp(plan->device_figures, "estimated") == 0 || strcmp(plan->device_figures, "unknown") == 0;
}

static const char *peak_text(const brg_plan *plan, char *buf, size_t size) {
    flops_rate(plan->device_peak_flops / 1e12, buf, size);
    return buf;
}

static void config_line(const brg_plan *plan, char *buf, size_t size) {
    const brg__config *c = &plan->config;
    int S = c->ranks * c->chunks, n[BRG__POLICY_COUNT] = {0};
    for (int s = 0; s < S; s++) n[plan->policy[s]]++;
    char recompute[96];
    if (n[BRG_RECOMPUTE_NONE] == S) snprintf(recompute, sizeof recompute, "none");
    else if (n[BRG_RECOMPUTE_FULL] == S) snprintf(recompute, sizeof recompute, "full on every stage");
    else if (n[BRG_RECOMPUTE_SELECTIVE] == S) snprintf(recompute, sizeof recompute, "selective on every stage");
    else
        snprintf(recompute, sizeof recompute, "full on %d, selective on %d, none on %d stages", n[BRG_RECOMPUTE_FULL],
                 n[BRG_RECOMPUTE_SELECTIVE], n[BRG_RECOMPUTE_NONE]);
    char chunks[64] = "";
    if (c->chunks > 1) snprintf(chunks, sizeof chunks, " with %d chunks per stage", c->chunks);
    int tp = brg__config_tp(c);
    snprintf(buf, size, "p %d x d %d%s x t %d%s, %s%s, micro-batch %lld x %lld micro-batches per replica; recompute: %s",
             c->ranks, c->replicas, c->zero && c->replicas > 1 ? " (ZeRO-1)" : "", tp,
             tp > 1 ? (c->sp ? " (tensor parallel, sequence parallel)" : " (tensor parallel)") : "",
             brg__schedule_title(c->kind), chunks, (long long)c->micro_batch, (long long)c->micro_batches, recompute);
}

/* A stage's devices for the stage table: all of them, or with tensor parallelism replica 0's group and how
 * many groups there are. */
static void stage_devices(const brg_plan *plan, const brg_plan_rank *rk, char *buf, size_t size) {
    int tp = rk->tensor_parallel > 1 ? rk->tensor_parallel : 1;
    if (tp == 1) {
        brg__format_devices(rk->devices, rk->device_count, buf, size);
        return;
    }
    char group[24];
    brg__format_devices(rk->devices, tp, group, sizeof group);
    int groups = rk->device_count / tp;
    if (groups > 1) snprintf(buf, size, "%s +%d group%s", group, groups - 1, groups > 2 ? "s" : "");
    else snprintf(buf, size, "%s", group);
    (void)plan;
}

static void header(const brg_plan *plan, brg__sb *b, int markdown) {
    const brg_plan_summary *sm = &plan->summary;
    char params[32], tokens[32];
    count_text((double)plan->parameters, params, sizeof params);
    thousands((double)plan->global_batch * (double)plan->tokens_per_sample, tokens, sizeof tokens);
    if (markdown) brg__sb_printf(b, "# Plan: %s\n\n", plan->model_name);
    else brg__sb_printf(b, "brigade plan: %s\n", plan->model_name);
    char devices[600];
    if (plan->device_mix[0]) snprintf(devices, sizeof devices, "%d devices (%s)", sm->devices, plan->device_mix);
    else
        snprintf(devices, sizeof devices, "%d x %s", sm->devices,
                 plan->device_model[0] ? plan->device_model : brg_device_kind_name(plan->device_kind));
    brg__sb_printf(b, "%s%s parameters, %d layers, %lld tokens per sample; %s (%s) on %d node%s, %s; global batch "
                      "%lld samples (%s tokens)%s\n",
                   markdown ? "" : "  ", params, plan->layers, (long long)plan->tokens_per_sample, devices,
                   plan->topology_source, plan->nodes, plan->nodes > 1 ? "s" : "", brg_precision_name(plan->precision),
                   (long long)plan->global_batch, tokens, markdown ? "\n" : "");
}

static void predictions(const brg_plan *plan, brg__sb *b, int markdown) {
    const brg_plan_summary *sm = &plan->summary;
    char line[512], it[32], ar[32], peak[32], tps[32], lb[32];
    config_line(plan, line, sizeof line);
    brg__format_seconds(sm->iteration_seconds, it, sizeof it);
    brg__format_seconds(sm->allreduce_seconds, ar, sizeof ar);
    brg__format_bytes((double)sm->peak_memory_bytes, peak, sizeof peak);
    brg__format_seconds(sm->lower_bound_seconds, lb, sizeof lb);
    thousands(sm->tokens_per_second, tps, sizeof tps);
    if (markdown) {
        brg__sb_printf(b, "**Plan:** %s.\n\n", line);
        if (!sm->predicted) {
            brg__sb_printf(b, "_The plan file holds no predictions._\n\n");
            return;
        }
        char rate[32];
        flops_rate(sm->tflops_per_device, rate, sizeof rate);
        brg__sb_printf(b, "| iteration | tokens/s | MFU | model FLOP/s per device | bubble | all-reduce | peak memory |\n");
        brg__sb_printf(b, "|---|---|---|---|---|---|---|\n");
        brg__sb_printf(b, "| %s | %s | %.1f%% | %s | %.1f%% | %s | %s |\n\n", it, tps, 100.0 * sm->mfu, rate,
                       100.0 * sm->bubble, ar, peak);
        if (estimated_peak(plan))
            brg__sb_printf(b, "MFU is against the topology's %s peak of %s per device (`brigade topo --probe` "
                              "measures it).\n\n",
                           plan->device_figures, peak_text(plan, rate, sizeof rate));
        return;
    }
    brg__sb_printf(b, "\nPLAN  %s\n", line);
    if (!sm->predicted) {
        brg__sb_printf(b, "  (the plan file holds no predictions)\n");
        return;
    }
    char rate[32];
    flops_rate(sm->tflops_per_device, rate, sizeof rate);
    brg__sb_printf(b, "  iteration %s | %s tokens/s | MFU %.1f%% (%s per device) | bubble %.1f%% | all-reduce %s "
                      "| peak memory %s\n",
                   it, tps, 100.0 * sm->mfu, rate, 100.0 * sm->bubble, ar, peak);
    if (estimated_peak(plan))
        brg__sb_printf(b, "  (MFU against the topology's %s peak of %s per device: brigade topo --probe measures it)\n",
                       plan->device_figures, peak_text(plan, rate, sizeof rate));
}

static void binds(const brg_plan *plan, brg__sb *b, int markdown) {
    if (!plan->bind_count) return;
    brg__sb_printf(b, markdown ? "## What binds\n\n" : "\nWHAT BINDS\n");
    for (int i = 0; i < plan->bind_count; i++) brg__sb_printf(b, markdown ? "- %s\n" : "  - %s\n", plan->binds[i]);
    if (markdown) brg__sb_printf(b, "\n");
}

static void stage_table(const brg_plan *plan, brg__sb *b, int markdown) {
    const brg__config *c = &plan->config;
    int R = c->ranks, S = R * c->chunks;
    if (markdown) {
        brg__sb_printf(b, "## Stages\n\nTimes are per micro-batch; memory is per device at its peak (every replica of a "
                          "stage holds the same%s).\n\n",
                       brg__config_tp(c) > 1 ? "; parameters are one device's slices, devices replica 0's "
                                               "tensor-parallel group and how many more groups run the stage"
                                             : "");
        brg__sb_printf(b, "| stage | layers | devices | parameters | recompute | forward | backward | params + grads + "
                          "optimizer | activations | workspace | total / usable | free | sends | over |\n");
        brg__sb_printf(b, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    } else {
        brg__sb_printf(b, "\nSTAGES (times per micro-batch; memory per device%s)\n",
                       brg__config_tp(c) > 1 ? "; params: one device's slices; devices: replica 0's group, +N groups" : "");
        brg__sb_printf(b, "  %5s %-26s %-16s %9s %-9s %9s %9s %10s %10s %9s %19s %5s %9s  %s\n", "stage", "layers", "devices",
                       "params", "recompute", "forward", "backward", "p+g+optim", "activation", "workspace",
                       "total / usable", "free", "sends", "over");
    }
    for (int s = 0; s < S; s++) {
        const brg_plan_stage *st = &plan->stages[s];
        const brg_plan_rank *rk = &plan->ranks[st->rank];
        char layers[96], devices[64], params[32], f[32], bk[32], st_bytes[32], act[32], ws[32], total[32], usable[32],
            sends[32], over[64], free_text[16];
        snprintf(layers, sizeof layers, "%s..%s (%d)", st->first_layer_name, st->last_layer_name,
                 st->end_layer - st->first_layer);
        stage_devices(plan, rk, devices, sizeof devices);
        count_text((double)st->parameters, params, sizeof params);
        brg__format_seconds(st->forward_seconds, f, sizeof f);
        brg__format_seconds(st->backward_seconds, bk, sizeof bk);
        int first_chunk = st->chunk == 0;
        brg__format_bytes((double)(rk->parameter_bytes + rk->gradient_bytes + rk->optimizer_bytes), st_bytes, sizeof st_bytes);
        brg__format_bytes((double)rk->activation_bytes, act, sizeof act);
        brg__format_bytes((double)rk->workspace_bytes, ws, sizeof ws);
        brg__format_bytes((double)rk->total_bytes, total, sizeof total);
        brg__format_bytes((double)rk->usable_bytes, usable, sizeof usable);
        snprintf(free_text, sizeof free_text, "%.0f%%",
                 rk->usable_bytes > 0 ? 100.0 * (1.0 - (double)rk->total_bytes / (double)rk->usable_bytes) : 0.0);
        if (s + 1 < S) {
            brg__format_bytes((double)st->boundary_bytes, sends, sizeof sends);
            snprintf(over, sizeof over, "%s%s", brg_link_kind_name(st->boundary_link),
                     st->boundary_crosses_nodes ? " (across nodes)" : "");
        } else {
            snprintf(sends, sizeof sends, "-");
            snprintf(over, sizeof over, "-");
        }
        char memory_cells[4][80];
        if (!first_chunk) {
            /* The rank's memory is shown once, on its first chunk. */
            for (int k = 0; k < 4; k++) snprintf(memory_cells[k], sizeof memory_cells[k], "\"");
        } else {
            snprintf(memory_cells[0], sizeof memory_cells[0], "%s", st_bytes);
            snprintf(memory_cells[1], sizeof memory_cells[1], "%s", act);
            snprintf(memory_cells[2], sizeof memory_cells[2], "%s", ws);
            snprintf(memory_cells[3], sizeof memory_cells[3], "%s / %s", total, usable);
        }
        if (markdown)
            brg__sb_printf(b, "| %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", s, layers, devices,
                           params, brg_recompute_name(st->recompute), f, bk, memory_cells[0], memory_cells[1],
                           memory_cells[2], memory_cells[3], first_chunk ? free_text : "\"", sends, over);
        else
            brg__sb_printf(b, "  %5d %-26s %-16s %9s %-9s %9s %9s %10s %10s %9s %19s %5s %9s  %s\n", s, layers, devices,
                           params, brg_recompute_name(st->recompute), f, bk, memory_cells[0], memory_cells[1],
                           memory_cells[2], memory_cells[3], first_chunk ? free_text : "\"", sends, over);
    }
    if (markdown) brg__sb_printf(b, "\n");
}

/* Per pipeline rank: its data-parallel group, the gradient bytes summed across it per step, how much of
 * the sums the last micro-batch's backward hides, and the moments each replica holds. */
static void data_parallel_table(const brg_plan *plan, brg__sb *b, int markdown) {
    const brg__config *c = &plan->config;
    if (c->replicas < 2 || !plan->predicted) return;
    int tp = brg__config_tp(c);
    if (markdown)
        brg__sb_printf(b, "### Data parallelism (%d replicas%s%s)\n\n| stage | devices of its replicas | summed per step | "
                          "sums in all | exposed (not hidden by backward) | AdamW moments per device |\n"
                          "|---|---|---|---|---|---|\n",
                       c->replicas, c->zero ? ", ZeRO-1: reduce-scatter, then all-gather of the parameters" : ", all-reduce",
                       tp > 1 ? "; one ring per tensor-parallel rank, side by side: the devices of rank 0's, the bytes "
                                "of one device" : "");
    else
        brg__sb_printf(b, "\nDATA PARALLEL (%d replicas%s; sums posted as backward finishes each bucket%s)\n"
                          "  %-5s %-22s %14s %12s %12s %14s\n",
                       c->replicas, c->zero ? ", ZeRO-1: reduce-scatter + parameter all-gather" : ", all-reduce",
                       tp > 1 ? "; one ring per tensor-parallel rank: rank 0's devices, one device's bytes" : "", "stage",
                       "devices", "summed/step", "in all", "exposed", "moments/device");
    for (int r = 0; r < c->ranks; r++) {
        const brg_plan_rank *rk = &plan->ranks[r];
        char devices[64] = "", bytes[32], total[32], exposed[32], moments[32];
        size_t used = 0;
        /* With tensor parallelism, t rings run side by side, one per rank of the groups: the first one's. */
        int width = rk->tensor_parallel > 1 ? rk->tensor_parallel : 1, n = rk->device_count / width;
        for (int i = 0; i < n && used < sizeof devices - 8; i++) {
            if (i == 3 && n > 4) {
                used += (size_t)snprintf(devices + used, sizeof devices - used, ",..,%d", rk->devices[(n - 1) * width]);
                break;
            }
            used += (size_t)snprintf(devices + used, sizeof devices - used, "%s%d", i ? "," : "", rk->devices[i * width]);
        }
        brg__format_bytes((double)rk->allreduce_bytes, bytes, sizeof bytes);
        brg__format_seconds(rk->allreduce_total_seconds, total, sizeof total);
        brg__format_seconds(rk->allreduce_seconds, exposed, sizeof exposed);
        brg__format_bytes((double)rk->moment_bytes, moments, sizeof moments);
        if (markdown)
            brg__sb_printf(b, "| %d | %s | %s | %s | %s | %s |\n", r, devices, bytes, total, exposed, moments);
        else
            brg__sb_printf(b, "  %-5d %-22s %14s %12s %12s %14s\n", r, devices, bytes, total, exposed, moments);
    }
    if (markdown) brg__sb_printf(b, "\n");
}

/* Per stage: the tensor-parallel group (replica 0's), what its collectives carry per micro-batch and over
 * which link, their time and their share of the stage's passes. */
static void tensor_parallel_table(const brg_plan *plan, brg__sb *b, int markdown) {
    const brg__config *c = &plan->config;
    int tp = brg__config_tp(c), S = c->ranks * c->chunks;
    if (tp < 2) return;
    const brg_plan_rank *r0 = &plan->ranks[0];
    char bandwidth[48] = "";
    if (r0->tensor_parallel_bandwidth > 0)
        snprintf(bandwidth, sizeof bandwidth, ", %.0f GB/s", r0->tensor_parallel_bandwidth / 1e9);
    const char *what = c->sp ? "sequence parallel: positions gathered before and summed-and-scattered after each split "
                               "op, the residual stream 1/t per device"
                             : "all-reduced after each row-parallel op and before each column-parallel op's input gradient";
    if (markdown)
        brg__sb_printf(b, "### Tensor parallelism (t %d, %s)\n\nEach stage of each replica runs on a group of %d devices of "
                          "one node, over %s links%s; the collectives are on the critical path (not overlapped). Bytes "
                          "are the buffers reduced or gathered per micro-batch, forward and backward.\n\n"
                          "| stage | group (replica 0) | collectives per micro-batch | over | time per micro-batch | share "
                          "of forward + backward |\n|---|---|---|---|---|---|\n",
                       tp, what, tp, brg_link_kind_name(r0->tensor_parallel_link), bandwidth);
    else
        brg__sb_printf(b, "\nTENSOR PARALLEL (t %d over %s links%s; %s)\n  %-5s %-18s %14s %-14s %12s %8s\n", tp,
                       brg_link_kind_name(r0->tensor_parallel_link), bandwidth, what, "stage", "group (replica 0)",
                       "bytes/micro", "over", "time/micro", "share");
    for (int s = 0; s < S; s++) {
        const brg_plan_stage *st = &plan->stages[s];
        const brg_plan_rank *rk = &plan->ranks[st->rank];
        char group[48], bytes[32], seconds[32], share[16];
        brg__format_devices(rk->devices, tp, group, sizeof group);
        brg__format_bytes((double)st->tensor_parallel_bytes, bytes, sizeof bytes);
        brg__format_seconds(st->tensor_parallel_seconds, seconds, sizeof seconds);
        double work = st->forward_seconds + st->backward_seconds;
        snprintf(share, sizeof share, "%.1f%%", work > 0 ? 100.0 * st->tensor_parallel_seconds / work : 0.0);
        if (markdown)
            brg__sb_printf(b, "| %d | %s | %s | %s | %s | %s |\n", s, group, bytes,
                           brg_link_kind_name(rk->tensor_parallel_link), seconds, share);
        else
            brg__sb_printf(b, "  %-5d %-18s %14s %-14s %12s %8s\n", s, group, bytes,
                           brg_link_kind_name(rk->tensor_parallel_link), seconds, share);
    }
    if (plan->vocab_padding)
        brg__sb_printf(b, "%sThe vocabulary is padded by %lld row%s, to a multiple of %d, so that each device holds an equal "
                          "share of the embedding and the output head (Megatron-LM pads it so); no token reaches %s and "
                          "the loss leaves %s logits out.\n",
                       markdown ? "\n" : "  ", (long long)plan->vocab_padding, plan->vocab_padding > 1 ? "s" : "", tp,
                       plan->vocab_padding > 1 ? "them" : "it", plan->vocab_padding > 1 ? "their" : "its");
    if (markdown) brg__sb_printf(b, "\n");
}

static void comparison_table(const brg_plan *plan, brg__sb *b, int markdown) {
    if (!plan->comparison_count) return;
    double base = plan->comparisons[0].iteration_seconds;
    if (markdown) {
        brg__sb_printf(b, "## Against the obvious alternatives\n\nEvery row is scored by the same model (the same "
                          "simulation). Baselines keep this plan's t, p, d, b, m and schedule, place stages in device order "
                          "(stage-major, replicas innermost: DeepSpeed's default rank order) and choose recomputation "
                          "as this plan does.\n\n");
        brg__sb_printf(b, "| plan | configuration | iteration | tokens/s | MFU | bubble | peak memory | vs this plan |\n");
        brg__sb_printf(b, "|---|---|---|---|---|---|---|---|\n");
    } else {
        brg__sb_printf(b, "\nCOMPARISON (same model; baselines keep this plan's t, p, d, b, m and schedule, in device order)\n");
        brg__sb_printf(b, "  %-24s %-68s %10s %12s %6s %7s %10s  %s\n", "plan", "configuration", "iteration", "tokens/s",
                       "MFU", "bubble", "peak mem", "vs this plan");
    }
    for (int i = 0; i < plan->comparison_count; i++) {
        const brg__comparison *r = &plan->comparisons[i];
        char it[32], tps[32], peak[32], vs[320];
        brg__format_seconds(r->iteration_seconds, it, sizeof it);
        thousands(r->tokens_per_second, tps, sizeof tps);
        brg__format_bytes((double)r->peak_memory_bytes, peak, sizeof peak);
        if (i == 0) snprintf(vs, sizeof vs, "-");
        else if (!r->feasible) snprintf(vs, sizeof vs, "does not fit: %s", r->why);
        else if (r->iteration_seconds > 0) snprintf(vs, sizeof vs, "%+.1f%% time", 100.0 * (r->iteration_seconds / base - 1.0));
        if (markdown)
            brg__sb_printf(b, "| %s | %s | %s | %s | %.1f%% | %.1f%% | %s | %s |\n", r->label, r->description, it, tps,
                           100.0 * r->mfu, 100.0 * r->bubble, peak, vs);
        else
            brg__sb_printf(b, "  %-24s %-68s %10s %12s %5.1f%% %6.1f%% %10s  %s\n", r->label, r->description, it, tps,
                           100.0 * r->mfu, 100.0 * r->bubble, peak, vs);
    }
    if (markdown) brg__sb_printf(b, "\n");
}

static void footer(const brg_plan *plan, brg__sb *b, int markdown) {
    const brg_plan_summary *sm = &plan->summary;
    if (!plan->search_note[0]) return;
    char lb[32];
    brg__format_seconds(sm->lower_bound_seconds, lb, sizeof lb);
    double gap = sm->iteration_seconds > 0 ? 1.0 - sm->lower_bound_seconds / sm->iteration_seconds : 0.0;
    if (markdown) brg__sb_printf(b, "## How this was found\n\n");
    brg__sb_printf(b, "%ssearch: %s; no plan under the model can beat %s (%.1f%% below this plan%s)\n",
                   markdown ? "- " : "\n", plan->search_note, lb, 100.0 * gap,
                   sm->exhaustive ? "" : ": from each configuration's work, pipeline fill and all-reduce, without its memory limits");
    brg__sb_printf(b, "%smodel: op passes as rooflines of the device's %s peak and memory bandwidth at the given "
                      "efficiencies, plus a fixed cost per pass; transfers latency + bytes / bandwidth of the slowest "
                      "replica's link; ring all-reduce; memory as the runtime allocates it, walked through each rank's "
                      "instruction stream%s\n",
                   markdown ? "- " : "", brg_precision_name(plan->precision),
                   brg__config_tp(&plan->config) > 1 ? "; with tensor parallelism, all of it for one device's share of "
                                                       "each op (its slices of the parameters), plus the group's "
                                                       "collectives as rings on its slowest link"
                                                     : "");
}

brg_status brg_plan_report_text(const brg_plan *plan, char **out) {
    if (!plan || !out) return BRG_ERR_INVALID_ARGUMENT;
    brg__sb b = {0};
    header(plan, &b, 0);
    predictions(plan, &b, 0);
    binds(plan, &b, 0);
    stage_table(plan, &b, 0);
    data_parallel_table(plan, &b, 0);
    tensor_parallel_table(plan, &b, 0);
    comparison_table(plan, &b, 0);
    footer(plan, &b, 0);
    if (b.failed || !b.data) {
        free(b.data);
        return BRG_ERR_OUT_OF_MEMORY;
    }
    *out = b.data;
    return BRG_OK;
}

/* "dir/report.md" -> "dir/report-<what>.svg" and the name relative to the Markdown file. */
static void picture_paths(const char *markdown_path, const char *what, char *path, size_t size, char *relative,
                          size_t relative_size) {
    const char *slash = strrchr(markdown_path, '/');
    const char *base = slash ? slash + 1 : markdown_path;
    const char *dot = strrchr(base, '.');
    size_t stem = dot && dot > base ? (size_t)(dot - markdown_path) : strlen(markdown_path);
    snprintf(path, size, "%.*s-%s.svg", (int)stem, markdown_path, what);
    size_t base_stem = dot && dot > base ? (size_t)(dot - base) : strlen(base);
    snprintf(relative, relative_size, "%.*s-%s.svg", (int)base_stem, base, what);
}

brg_status brg_plan_write_report(const brg_plan *plan, const char *markdown_path, brg_error *err) {
    if (!plan || !markdown_path)
        return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT, "brg_plan_write_report: %s is NULL", !plan ? "plan" : "path");
    if (!plan->timeline)
        return brg__error_set(err, BRG_ERR_INVALID_USAGE,
                              "the Markdown report needs a plan from brg_plan_search (a loaded plan has no timeline)");
    const char *what[3] = {"gantt", "memory", "placement"};
    const char *titles[3] = {"Predicted iteration: one row per pipeline stage (one replica), time left to right",
                             "Memory per device against its capacity",
                             "Where the stages go: each box a node, each cell a device, coloured by stage"};
    char paths[3][1024], relative[3][512];
    for (int k = 0; k < 3; k++) {
        picture_paths(markdown_path, what[k], paths[k], sizeof paths[k], relative[k], sizeof relative[k]);
        brg__sb svg = {0};
        if (k == 0) brg__svg_gantt(plan, &svg);
        else if (k == 1) brg__svg_memory(plan, &svg);
        else brg__svg_placement(plan, &svg);
        if (svg.failed || !svg.data) {
            free(svg.data);
            return brg__error_set(err, BRG_ERR_OUT_OF_MEMORY, "out of memory drawing %s", paths[k]);
        }
        brg_status s = brg__write_text_file(paths[k], svg.data, err);
        free(svg.data);
        if (s != BRG_OK) return s;
    }
    brg__sb b = {0};
    header(plan, &b, 1);
    predictions(plan, &b, 1);
    binds(plan, &b, 1);
    brg__sb_printf(&b, "![%s](%s)\n\n", titles[0], relative[0]);
    stage_table(plan, &b, 1);
    data_parallel_table(plan, &b, 1);
    tensor_parallel_table(plan, &b, 1);
    brg__sb_printf(&b, "![%s](%s)\n\n![%s](%s)\n\n", titles[1], relative[1], titles[2], relative[2]);
    comparison_table(plan, &b, 1);
    footer(plan, &b, 1);
    brg__sb_printf(&b, "\nThe predicted timeline opens in https://ui.perfetto.dev: `brigade plan ... --trace FILE` writes it "
                       "in the format of `brigade train --trace`.\n");
    if (b.failed || !b.data) {
        free(b.data);
        return brg__error_set(err, BRG_ERR_OUT_OF_MEMORY, "out of memory writing the report");
    }
    brg_status s = brg__write_text_file(markdown_path, b.data, err);
    free(b.data);
    return s;
}

brg_status brg_plan_write_trace(const brg_plan *plan, const char *path, brg_error *err) {
    if (!plan || !path)
        return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT, "brg_plan_write_trace: %s is NULL", !plan ? "plan" : "path");
    if (!plan->timeline)
        return brg__error_set(err, BRG_ERR_INVALID_USAGE,
                              "the predicted timeline needs a plan from brg_plan_search (a loaded plan has none)");
    return brg_timeline_write_trace(plan->timeline, path, "stage", err);
}
