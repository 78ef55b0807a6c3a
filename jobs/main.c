/*
 * main.c: the `decouple` program: one binary, one subcommand per stage of the pipeline.
 *
 *   decouple run     CONFIG.yaml   stage 1 + stage 2 + evaluation
 *   decouple train   CONFIG.yaml   stage 1: representation + joint classifier
 *   decouple heads   CONFIG.yaml   stage 2: the decoupled heads from stage-1 weights
 *   decouple eval    CONFIG.yaml   the saved heads on the test split
 *   decouple extract CONFIG.yaml   features, logits and labels of a split as .npy
 */
#include "job.h"

#include <stdio.h>
#include <string.h>

int cmd_train(int argc, char **argv);
int cmd_extract(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_heads(int argc, char **argv);
int cmd_eval(int argc, char **argv);

static const char *USAGE =
    "usage: decouple <command> [options]\n"
    "\n"
    "commands:\n"
    "  run      CONFIG.yaml  the whole pipeline: stage 1, features, every head, evaluation\n"
    "  train    CONFIG.yaml  stage 1: train the backbone and the joint classifier\n"
    "  heads    CONFIG.yaml  stage 2 from stage-1 weights: fit and evaluate the heads\n"
    "  eval     CONFIG.yaml  evaluate stage-1 weights and saved heads on the test split\n"
    "  extract  CONFIG.yaml  write features, logits and labels of a split as .npy\n"
    "\n"
    "`decouple <command> --help` describes each command. Configuration keys: docs/CONFIG.md.\n";

int main(int argc, char **argv) {
    if (argc < 2) {
        fputs(USAGE, stderr);
        return DC_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        fputs(USAGE, stdout);
        return DC_EXIT_OK;
    }
    if (!strcmp(cmd, "run")) return cmd_run(argc - 1, argv + 1);
    if (!strcmp(cmd, "train")) return cmd_train(argc - 1, argv + 1);
    if (!strcmp(cmd, "heads")) return cmd_heads(argc - 1, argv + 1);
    if (!strcmp(cmd, "eval")) return cmd_eval(argc - 1, argv + 1);
    if (!strcmp(cmd, "extract")) return cmd_extract(argc - 1, argv + 1);
    fprintf(stderr, "decouple: unknown command '%s'\n\n%s", cmd, USAGE);
    return DC_EXIT_USAGE;
}
