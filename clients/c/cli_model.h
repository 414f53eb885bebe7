/*
 * cli_model.h — the `isvd` commands that work on saved models, not on a
 * daemon (cli_model.c): `isvd merge` and `isvd inspect`.  Each takes the
 * command's own argv (argv[0] is the command name) and returns the exit
 * status.  They link the engine (update/), never the daemon.
 */
#ifndef ISVD_CLI_MODEL_H
#define ISVD_CLI_MODEL_H

int cli_merge(int argc, char **argv);
int cli_inspect(int argc, char **argv);

#endif
