// lathe-cli subcommands, each in its own file and added to the app by one call from main().
#pragma once

#include <CLI/CLI.hpp>

// `lathe-cli tokenize --vocab DIR [--decode]`: GPT-2 BPE from stdin to stdout (text -> JSON list
// of ids, or with --decode a JSON list of ids -> text).
void addTokenizeCommand(CLI::App& app);

// `run`, `resume`, `runs`, `show`, `compare`, `methods`, `export`: the run engine and store.
void addRunCommands(CLI::App& app);
