// Subcommands implemented outside main.cpp. Each takes the full argv (argv[1] is its name) and
// returns the exit status; bad arguments throw std::invalid_argument.
#pragma once

namespace hs::cli {

int cmd_kv_report(int argc, char** argv);
int cmd_eval(int argc, char** argv);

}  // namespace hs::cli
