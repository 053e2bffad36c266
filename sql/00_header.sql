/*
 * migrate_ext 1.0: install script.
 *
 * Everything lives in schema migrate_ext, nothing in public (on Supabase
 * every function in public is an RPC endpoint).  Nothing is granted to
 * PUBLIC: the extension's owner (@extowner@, the role that ran CREATE
 * EXTENSION) is the intended caller.  Functions that run SQL on behalf of
 * the caller pin search_path, so a caller's search_path cannot steer them.
 */

\echo Use "CREATE EXTENSION migrate_ext" to load this file. \quit

