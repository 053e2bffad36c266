/*-------------------------------------------------------------------------
 *
 * migrate_ext.h
 *	  Settings and helpers shared by every part of migrate_ext.
 *
 * Keep this header free of jansson and libcurl: it is included next to
 * PostgreSQL's own headers everywhere.
 *
 *-------------------------------------------------------------------------
 */
#ifndef MIGRATE_EXT_H
#define MIGRATE_EXT_H

/* Settings (migrate_ext.*), defined in migrate_ext.c */
extern char *migrate_xendit_base_url;
extern char *migrate_systemeio_base_url;
extern char *migrate_xendit_cursor_param;
extern int	migrate_page_size;
extern int	migrate_connect_timeout_ms;
extern int	migrate_timeout_ms;
extern int	migrate_max_retries;
extern int	migrate_max_retry_wait_ms;
extern int	migrate_max_response_bytes;
extern char *migrate_ca_file;
extern int	migrate_progress_pages;
extern int	migrate_lock_timeout_ms;
extern int	migrate_lock_retries;
extern int	migrate_min_staging_rows;

/* credentials.c */
extern char *ReadApiKey(const char *source);

#endif							/* MIGRATE_EXT_H */
