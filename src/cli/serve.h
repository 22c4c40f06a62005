// `headshard serve`: the OpenAI-compatible HTTP server over the engine.
#pragma once

// argv[1] is "serve". Returns the exit status: 0 after a clean shutdown (SIGTERM or SIGINT, then
// a grace period for running requests), 1 when the model fails to load or the port cannot be
// had, 2 for bad settings.
int cmd_serve(int argc, char** argv);
