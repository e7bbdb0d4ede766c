// `lathe-cli tokenize`: reads all of stdin and prints GPT-2 BPE ids as a JSON list, or with
// --decode reads a JSON list of ids and prints the text. The logic is core's tokenizeToJson /
// decodeFromJson; a bad vocabulary or input exits with code 2 and a message on stderr.
#include <iostream>
#include <iterator>
#include <memory>
#include <string>

#include "app/cli/Commands.h"
#include "core/base/Error.h"
#include "core/data/Gpt2Tokenizer.h"

void addTokenizeCommand(CLI::App& app) {
  struct Options {
    std::string vocab_dir;
    bool decode = false;
  };
  auto opts = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand(
      "tokenize", "GPT-2 BPE: text on stdin -> JSON list of token ids (or back with --decode)");
  cmd->add_option("--vocab", opts->vocab_dir, "directory holding vocab.json and merges.txt")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd->add_flag("--decode", opts->decode, "read a JSON list of ids and print the text");
  cmd->callback([opts] {
    try {
      std::ios::sync_with_stdio(false);
      const std::string input((std::istreambuf_iterator<char>(std::cin)),
                              std::istreambuf_iterator<char>());
      const auto tok = lathe::data::Gpt2Tokenizer::load(opts->vocab_dir);
      if (opts->decode) {
        std::cout << lathe::data::decodeFromJson(tok, input) << std::flush;
      } else {
        std::cout << lathe::data::tokenizeToJson(tok, input) << "\n" << std::flush;
      }
    } catch (const lathe::Error& e) {
      // CLI11's exit() prints nothing for RuntimeError, so the message goes out here.
      std::cerr << "lathe-cli tokenize: " << e.what() << "\n";
      throw CLI::RuntimeError(2);
    }
  });
}
