/* The report's pictures, drawn as SVG: the predicted iteration as a Gantt chart, memory per device against
 * capacity, and the stages over the nodes. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "report_internal.h"

static const char *kind_color(brg_instruction_kind k) {
    switch (k) {
    case BRG_INSTRUCTION_FORWARD: return "#4c78a8";
    case BRG_INSTRUCTION_BACKWARD: return "#54a24b";
    case BRG_INSTRUCTION_BACKWARD_INPUT: return "#54a24b";
    case BRG_INSTRUCTION_BACKWARD_WEIGHT: return "#9ecf8a";
    case BRG_INSTRUCTION_ALLREDUCE_GRADS: return "#f58518";
    case BRG_INSTRUCTION_OPTIMIZER_STEP: return "#9d755d";
    default: return "#bab0ac";
    }
}

/* A colour per stage: hues around the wheel. */
static void stage_color(int k, int n, char *buf, size_t size) {
    double h = n > 0 ? fmod(360.0 * k / n, 360.0) : 0.0, s = 0.55, l = 0.55;
    double c = (1 - fabs(2 * l - 1)) * s, x = c * (1 - fabs(fmod(h / 60.0, 2) - 1)), m = l - c / 2;
    double r = 0, g = 0, b = 0;
    if (h < 60) r = c, g = x;
    else if (h < 120) r = x, g = c;
    else if (h < 180) g = c, b = x;
    else if (h < 240) g = x, b = c;
    else if (h < 300) r = x, b = c;
    else r = c, b = x;
    snprintf(buf, size, "#%02x%02x%02x", (int)((r + m) * 255), (int)((g + m) * 255), (int)((b + m) * 255));
}

static double nice_step(double span, int ticks) {
    double raw = span / ticks, p = pow(10.0, floor(log10(raw)));
    double f = raw / p;
    return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
}

static void time_label(double t, double step, char *buf, size_t size) {
    if (step >= 1.0) snprintf(buf, size, "%g s", t);
    else if (step >= 1e-3) snprintf(buf, size, "%g ms", round(t * 1e6) / 1e3);
    else snprintf(buf, size, "%g us", round(t * 1e9) / 1e3);
}

static int compare_events(const void *a, const void *b) {
    const brg_trace_event *x = a, *y = b;
    if (x->rank != y->rank) return x->rank - y->rank;
    return (x->start > y->start) - (x->start < y->start);
}

void brg__svg_gantt(const brg_plan *plan, brg__sb *b) {
    int64_t n = 0;
    brg_timeline_events(plan->timeline, NULL, &n);
    brg_trace_event *events = brg__malloc(sizeof *events * (size_t)(n ? n : 1));
    if (!events) {
        b->failed = 1;
        return;
    }
    brg_timeline_events(plan->timeline, events, &n);
    qsort(events, (size_t)n, sizeof *events, compare_events);
    brg_timeline_summary sum;
    brg_timeline_get_summary(plan->timeline, &sum);
    int R = plan->config.ranks;
    double row = R <= 16 ? 24 : R <= 64 ? 11 : fmax(3.0, 700.0 / R);
    double left = 80, right = 20, top = 44, width = 1100, plot = width - left - right;
    double height = top + row * R + 70;
    double scale = sum.makespan > 0 ? plot / sum.makespan : 1.0;
    int labels = n <= 600;
    brg__sb_printf(b, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" "
                      "font-family=\"Helvetica, Arial, sans-serif\" font-size=\"11\">\n",
                   width, height, width, height);
    brg__sb_printf(b, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    char it[32];
    brg__format_seconds(sum.makespan, it, sizeof it);
    brg__sb_printf(b, "<text x=\"%.0f\" y=\"20\" font-size=\"14\" font-weight=\"bold\">Predicted iteration of %s: %s, "
                      "bubble %.1f%%</text>\n",
                   left, plan->model_name, it, 100.0 * sum.bubble_fraction);
    for (int r = 0; r < R; r++) {
        double y = top + r * row;
        if (r % 2) brg__sb_printf(b, "<rect x=\"%.0f\" y=\"%.1f\" width=\"%.0f\" height=\"%.1f\" fill=\"#f4f4f4\"/>\n", left, y, plot, row);
        if (R <= 64 || r % (R / 32) == 0)
            brg__sb_printf(b, "<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\" font-size=\"%.0f\">stage %d</text>\n", left - 6,
                           y + row * 0.5 + 3.5, row >= 11 ? 11.0 : 8.0, r);
    }
    /* Compute events, merged where they touch within a quarter pixel. */
    for (int64_t i = 0; i < n;) {
        const brg_trace_event *e = &events[i];
        if (e->track != BRG_TRACE_COMPUTE || e->duration <= 0) {
            i++;
            continue;
        }
        double x0 = left + e->start * scale, x1 = left + (e->start + e->duration) * scale;
        int64_t j = i + 1;
        if (!labels)
            while (j < n && events[j].rank == e->rank && events[j].track == BRG_TRACE_COMPUTE && events[j].kind == e->kind &&
                   left + events[j].start * scale - x1 < 0.25) {
                x1 = left + (events[j].start + events[j].duration) * scale;
                j++;
            }
        double y = top + e->rank * row + 1;
        brg__sb_printf(b, "<rect x=\"%.2f\" y=\"%.1f\" width=\"%.2f\" height=\"%.1f\" fill=\"%s\"", x0, y, fmax(0.4, x1 - x0),
                       row - 2, kind_color(e->kind));
        if (labels) brg__sb_printf(b, "><title>stage %d %s</title></rect>\n", e->rank, e->name);
        else brg__sb_printf(b, "/>\n");
        if (labels && x1 - x0 > 22 && row >= 16)
            brg__sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\" fill=\"white\" text-anchor=\"middle\" font-size=\"9\">%s</text>\n",
                           (x0 + x1) / 2, y + row / 2 + 2, e->name);
        i = j;
    }
    /* Time axis. */
    double axis = top + R * row + 4, step = nice_step(sum.makespan, 8);
    brg__sb_printf(b, "<line x1=\"%.0f\" y1=\"%.1f\" x2=\"%.0f\" y2=\"%.1f\" stroke=\"#333\"/>\n", left, axis, left + plot, axis);
    for (double t = 0; step > 0 && t <= sum.makespan * 1.0001; t += step) {
        char label[32];
        time_label(t, step, label, sizeof label);
        double x = left + t * scale;
        brg__sb_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#333\"/>"
                          "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n",
                       x, axis, x, axis + 5, x, axis + 17, label);
    }
    /* Legend. */
    const brg_instruction_kind kinds[] = {BRG_INSTRUCTION_FORWARD, BRG_INSTRUCTION_BACKWARD, BRG_INSTRUCTION_BACKWARD_WEIGHT,
                                          BRG_INSTRUCTION_ALLREDUCE_GRADS, BRG_INSTRUCTION_OPTIMIZER_STEP};
    const char *names[] = {"forward", plan->config.kind == BRG_SCHEDULE_ZB_H1 ? "backward (input)" : "backward (incl. recompute)",
                           "backward (weight)", "all-reduce", "optimizer step"};
    double lx = left, ly = axis + 34;
    for (int k = 0; k < 5; k++) {
        if (k == 2 && plan->config.kind != BRG_SCHEDULE_ZB_H1) continue;
        if (k == 3 && plan->config.replicas < 2) continue;
        brg__sb_printf(b, "<rect x=\"%.0f\" y=\"%.0f\" width=\"12\" height=\"12\" fill=\"%s\"/><text x=\"%.0f\" y=\"%.0f\">%s</text>\n",
                       lx, ly, kind_color(kinds[k]), lx + 16, ly + 10, names[k]);
        lx += 40 + 7.0 * (double)strlen(names[k]);
    }
    brg__sb_printf(b, "</svg>\n");
    free(events);
}

void brg__svg_memory(const brg_plan *plan, brg__sb *b) {
    int R = plan->config.ranks;
    double left = 70, top = 44, plot_h = 300, bar = fmin(48.0, 900.0 / R), gap = bar * 0.25;
    double width = fmax(900.0, left + R * (bar + gap) + 40), height = top + plot_h + 80;
    int64_t top_bytes = 1;
    for (int r = 0; r < R; r++) {
        const brg_plan_rank *rk = &plan->ranks[r];
        if (rk->capacity_bytes > top_bytes) top_bytes = rk->capacity_bytes;
        if (rk->total_bytes > top_bytes) top_bytes = rk->total_bytes;
    }
    double scale = plot_h / (double)top_bytes;
    brg__sb_printf(b, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" "
                      "font-family=\"Helvetica, Arial, sans-serif\" font-size=\"11\">\n",
                   width, height, width, height);
    brg__sb_printf(b, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    brg__sb_printf(b, "<text x=\"%.0f\" y=\"20\" font-size=\"14\" font-weight=\"bold\">Memory per device at its peak, by "
                      "stage</text>\n",
                   left);
    double base = top + plot_h;
    /* Axis in GB. */
    double step = nice_step((double)top_bytes / 1e9, 5);
    for (double gb = 0; step > 0 && gb * 1e9 <= (double)top_bytes * 1.0001; gb += step) {
        double y = base - gb * 1e9 * scale;
        brg__sb_printf(b, "<line x1=\"%.0f\" y1=\"%.1f\" x2=\"%.0f\" y2=\"%.1f\" stroke=\"#e0e0e0\"/>"
                          "<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\">%g GB</text>\n",
                       left, y, width - 20, y, left - 6, y + 4, gb);
    }
    static const char *colors[5] = {"#4c78a8", "#9ecae9", "#b279a2", "#f58518", "#bab0ac"};
    static const char *names[5] = {"parameters", "gradients", "optimizer state", "activations", "workspace"};
    for (int r = 0; r < R; r++) {
        const brg_plan_rank *rk = &plan->ranks[r];
        int64_t parts[5] = {rk->parameter_bytes, rk->gradient_bytes, rk->optimizer_bytes, rk->activation_bytes,
                            rk->workspace_bytes};
        double x = left + 10 + r * (bar + gap), y = base;
        for (int k = 0; k < 5; k++) {
            double h = (double)parts[k] * scale;
            y -= h;
            char amount[32];
            brg__format_bytes((double)parts[k], amount, sizeof amount);
            brg__sb_printf(b, "<rect x=\"%.1f\" y=\"%.2f\" width=\"%.1f\" height=\"%.2f\" fill=\"%s\"><title>stage %d %s: "
                              "%s</title></rect>\n",
                           x, y, bar, h, colors[k], r, names[k], amount);
        }
        double usable = base - (double)rk->usable_bytes * scale, capacity = base - (double)rk->capacity_bytes * scale;
        brg__sb_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#d62728\" stroke-width=\"2\"/>\n", x - 2,
                       capacity, x + bar + 2, capacity);
        brg__sb_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#d62728\" stroke-dasharray=\"3,2\"/>\n",
                       x - 2, usable, x + bar + 2, usable);
        if (R <= 32 || r % (R / 16) == 0)
            brg__sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%d</text>\n", x + bar / 2, base + 14, r);
    }
    brg__sb_printf(b, "<text x=\"%.0f\" y=\"%.1f\">stage</text>\n", left - 50, base + 14);
    double lx = left, ly = base + 36;
    for (int k = 0; k < 5; k++) {
        brg__sb_printf(b, "<rect x=\"%.0f\" y=\"%.0f\" width=\"12\" height=\"12\" fill=\"%s\"/><text x=\"%.0f\" y=\"%.0f\">%s</text>\n",
                       lx, ly, colors[k], lx + 16, ly + 10, names[k]);
        lx += 30 + 7.0 * (double)strlen(names[k]);
    }
    brg__sb_printf(b, "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"#d62728\" stroke-width=\"2\"/>"
                      "<text x=\"%.0f\" y=\"%.0f\">capacity</text>",
                   lx, ly + 6, lx + 14, ly + 6, lx + 18, ly + 10);
    lx += 80;
    brg__sb_printf(b, "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"#d62728\" stroke-dasharray=\"3,2\"/>"
                      "<text x=\"%.0f\" y=\"%.0f\">usable (less headroom and reserve)</text>\n",
                   lx, ly + 6, lx + 14, ly + 6, lx + 18, ly + 10);
    brg__sb_printf(b, "</svg>\n");
}

void brg__svg_placement(const brg_plan *plan, brg__sb *b) {
    const brg__config *c = &plan->config;
    int N = plan->devices_total, nodes = plan->nodes > 0 ? plan->nodes : 1;
    int *rank_of = brg__malloc(sizeof(int) * (size_t)N), *replica_of = brg__malloc(sizeof(int) * (size_t)N);
    int *count = brg__calloc((size_t)nodes, sizeof(int)), *slot = brg__malloc(sizeof(int) * (size_t)N);
    if (!rank_of || !replica_of || !count || !slot) {
        free(rank_of);
        free(replica_of);
        free(count);
        free(slot);
        b->failed = 1;
        return;
    }
    int tp = brg__config_tp(c);
    for (int d = 0; d < N; d++) rank_of[d] = replica_of[d] = -1;
    for (int k = 0; k < c->ranks; k++)
        for (int r = 0; r < c->replicas; r++)
            for (int i = 0; i < tp; i++) {
                int d = plan->devices[(k * c->replicas + r) * tp + i];
                if (d < 0 || d >= N) continue;
                rank_of[d] = k;
                replica_of[d] = r;
            }
    int per_node = 1;
    for (int d = 0; d < N; d++) {
        int node = plan->device_node[d] < nodes ? plan->device_node[d] : 0;
        slot[d] = count[node]++;
        if (count[node] > per_node) per_node = count[node];
    }
    int small = N <= 64;
    double cell = small ? 46 : 12, pad = small ? 10 : 4;
    int cols = per_node <= 8 ? per_node : (int)ceil(sqrt((double)per_node));
    int rows_in_node = (per_node + cols - 1) / cols;
    double node_w = cols * cell + 2 * pad, node_h = rows_in_node * cell + 2 * pad + (small ? 34 : 0);
    int node_cols = nodes <= 4 ? nodes : nodes <= 16 ? 4 : 8;
    int node_rows = (nodes + node_cols - 1) / node_cols;
    double left = 20, top = 44, gap = small ? 16 : 6;
    double width = fmax(520.0, left * 2 + node_cols * (node_w + gap)), height = top + node_rows * (node_h + gap) + 50;
    brg__sb_printf(b, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" "
                      "font-family=\"Helvetica, Arial, sans-serif\" font-size=\"11\">\n",
                   width, height, width, height);
    brg__sb_printf(b, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    char groups[64] = "";
    if (tp > 1) snprintf(groups, sizeof groups, ", each on a tensor-parallel group of %d", tp);
    brg__sb_printf(b, "<text x=\"%.0f\" y=\"20\" font-size=\"14\" font-weight=\"bold\">%d stages x %d replicas%s over %d "
                      "node%s (colour: stage)</text>\n",
                   left, c->ranks, c->replicas, groups, nodes, nodes > 1 ? "s" : "");
    double *cx = brg__malloc(sizeof(double) * (size_t)N), *cy = brg__malloc(sizeof(double) * (size_t)N);
    for (int node = 0; node < nodes; node++) {
        double x = left + (node % node_cols) * (node_w + gap), y = top + (node / node_cols) * (node_h + gap);
        brg__sb_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" rx=\"4\" fill=\"#fafafa\" "
                          "stroke=\"#888\"/>\n",
                       x, y, node_w, node_h);
        if (small)
            brg__sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\" fill=\"#555\">node %d</text>\n", x + pad, y + 12, node);
    }
    for (int d = 0; d < N; d++) {
        int node = plan->device_node[d] < nodes ? plan->device_node[d] : 0;
        double x0 = left + (node % node_cols) * (node_w + gap) + pad, y0 = top + (node / node_cols) * (node_h + gap) + pad +
                                                                              (small ? 34 : 0);
        double x = x0 + (slot[d] % cols) * cell, y = y0 + (slot[d] / cols) * cell;
        char color[16] = "#dddddd";
        if (rank_of[d] >= 0) stage_color(rank_of[d], c->ranks, color, sizeof color);
        brg__sb_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\" stroke=\"white\">"
                          "<title>device %d: stage %d, replica %d</title></rect>\n",
                       x, y, cell - 2, cell - 2, color, d, rank_of[d], replica_of[d]);
        if (cx && cy) {
            cx[d] = x + (cell - 2) / 2;
            cy[d] = y + (cell - 2) / 2;
        }
        if (small)
            brg__sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" fill=\"white\" font-size=\"10\">s%d</text>"
                              "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" fill=\"white\" font-size=\"9\">r%d</text>\n",
                           cx ? cx[d] : x, y + 17, rank_of[d], cx ? cx[d] : x, y + 31, replica_of[d]);
    }
    /* The pipeline of replica 0: where consecutive stages sit. */
    if (small && cx && cy && c->ranks > 1) {
        brg__sb_printf(b, "<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"6\" "
                          "markerHeight=\"6\" orient=\"auto-start-reverse\"><path d=\"M 0 0 L 10 5 L 0 10 z\" fill=\"#333\"/>"
                          "</marker></defs>\n");
        brg__sb_printf(b, "<g stroke=\"#333\" stroke-width=\"1.5\" fill=\"none\" opacity=\"0.8\">\n");
        for (int k = 0; k + 1 < c->ranks; k++) {
            int a = plan->devices[k * c->replicas * tp], z = plan->devices[(k + 1) * c->replicas * tp];
            /* An arc over the cells, from the top edge of one to the top edge of the next. */
            double ya = cy[a] - cell / 2 + 3, yz = cy[z] - cell / 2 + 3, lift = 10 + 0.15 * fabs(cx[z] - cx[a]);
            brg__sb_printf(b, "<path d=\"M %.1f %.1f Q %.1f %.1f %.1f %.1f\" marker-end=\"url(#arrow)\"/>\n", cx[a], ya,
                           (cx[a] + cx[z]) / 2, fmin(ya, yz) - lift, cx[z], yz);
        }
        brg__sb_printf(b, "</g>\n");
    }
    double ly = height - 22;
    brg__sb_printf(b, "<text x=\"%.0f\" y=\"%.0f\" fill=\"#555\">%s</text>\n", left, ly,
                   small ? "sN: stage N, rN: replica N; arrows follow replica 0 from stage to stage"
                         : "hover a cell for its stage and replica; hues go round the stages in order");
    brg__sb_printf(b, "</svg>\n");
    free(cx);
    free(cy);
    free(rank_of);
    free(replica_of);
    free(count);
    free(slot);
}
