-- The end of `make demo`: what the migration strategy's "Expected Results"
-- promised (written here as the seed states them, for the real data of the
-- business), beside what this run produced from the emulator's data set,
-- each difference explained by a rule or a line of the validation report.
\echo '== the seed''s expected results beside this run (production after the launch; why they differ)'
\pset format wrapped
\pset columns 170
WITH
-- the report's leads (validation_report(), section leads), read from the
-- launched tables: contacts by e-mail, and those without any payment
contact AS (
    SELECT DISTINCT lower(btrim(c.email)) AS email FROM migrate_ext.systemeio_raw AS c),
lead AS (
    SELECT (SELECT count(*) FROM contact) AS contacts,
           (SELECT count(*) FROM contact AS e
             WHERE NOT EXISTS (SELECT 1 FROM public.transactions AS t WHERE t.contact_email = e.email)) AS leads),
inv AS (
    SELECT i.product, count(*) FILTER (WHERE i.paid) AS paid,
           count(*) FILTER (WHERE i.paid AND i.excluded IS NOT NULL) AS excluded,
           avg(i.amount) FILTER (WHERE i.paid AND i.excluded IS NULL) AS average
      FROM migrate_ext.invoice_facts(migrate_ext.email_pattern()) AS i GROUP BY i.product),
tx AS (
    SELECT t.transaction_type AS product, count(*) AS n, sum(t.amount) AS amount,
           count(*) FILTER (WHERE t.payment_method = 'manual') AS manual, count(DISTINCT t.user_id) AS buyers
      FROM public.transactions AS t WHERE t.status = 'completed' GROUP BY t.transaction_type),
p AS (SELECT * FROM tx WHERE product = 'P2P'), c AS (SELECT * FROM tx WHERE product = 'Canva'),
ip AS (SELECT * FROM inv WHERE product = 'P2P'), ic AS (SELECT * FROM inv WHERE product = 'Canva')
SELECT x.measure, x.seed_expected, x.this_run, x.why
  FROM p, c, ip, ic, LATERAL (VALUES
    (1, 'customer profiles', '~6,000+ (3,664 P2P + 4,916 Canva - overlaps)',
     (SELECT count(*) FROM public.unified_profiles)::text,
     format('rule products.grants_profile: only %s buyers get a profile (Canva buyers stay contacts in systemeio_raw); '
            '%s P2P buyers + %s profiles production had that the launch kept (report: carried_over; admins, '
            'rows other tables reference)',
            (SELECT string_agg(pr.code, ', ') FROM migrate_ext.products AS pr WHERE pr.grants_profile), p.buyers,
            (SELECT count(*) FROM public.unified_profiles) - p.buyers)),
    (2, 'transactions (completed)', '~6,136 (3,334 P2P + 2,783 Canva PAID/SETTLED)',
     (SELECT count(*) FROM public.transactions WHERE status = 'completed')::text,
     format('the seed''s own parts add up to 6,117; this run adds %s of product Other (rule: the fallback product, '
            'report: no_product_match) and the P2P and Canva lines below',
            (SELECT n FROM tx WHERE product = 'Other'))),
    (3, 'transactions P2P', '3,334', p.n::text,
     format('%s PAID/SETTLED P2P invoices - %s excluded (report: excluded; the errors the DBA excluded) '
            '+ %s manual payments (report: paid_tag_without_invoice; rule products.manual_price) %s',
            ip.paid, ip.excluded, p.manual,
            CASE WHEN p.n - (ip.paid - ip.excluded + p.manual) <> 0
                 THEN format('+ %s production rows kept (report: carried_over)', p.n - (ip.paid - ip.excluded + p.manual))
                 ELSE '' END)),
    (4, 'transactions Canva', '2,783', c.n::text,
     format('%s PAID/SETTLED Canva invoices - %s excluded (report: excluded); no manual payments '
            '(rule: Canva has no products.manual_price, report: paid_tag_without_invoice) %s',
            ic.paid, ic.excluded,
            CASE WHEN c.n - (ic.paid - ic.excluded) <> 0
                 THEN format('+ %s production rows kept (report: carried_over)', c.n - (ic.paid - ic.excluded))
                 ELSE '' END)),
    (5, 'enrollments', '~6,000+ (P2P course + Canva ebook access)',
     (SELECT count(*) FROM public.enrollments)::text,
     format('rule products.enrollment_course: only %s enrolls (course %s); Canva grants no course, so no enrollment',
            (SELECT string_agg(pr.code, ', ') FROM migrate_ext.products AS pr WHERE pr.enrollment_course IS NOT NULL),
            (SELECT string_agg(pr.enrollment_course, ', ') FROM migrate_ext.products AS pr WHERE pr.enrollment_course IS NOT NULL))),
    (6, 'leads', '~10,000+',
     (SELECT leads FROM lead)::text,
     format('report, leads: %s contacts by e-mail, %s of them with no payment (kept in systemeio_raw, not customers); '
            'the seed''s figure counts every Systeme.io contact', (SELECT contacts FROM lead), (SELECT leads FROM lead))),
    (7, 'revenue P2P', 'PHP 3,334,000+', 'PHP ' || to_char(p.amount, 'FM9,999,999.00'),
     format('amounts as Xendit sent them (report: revenue); the seed counted PHP 1,000 a sale, '
            'the P2P invoices here average PHP %s, manual payments count PHP %s',
            round(ip.average, 2), (SELECT manual_price FROM migrate_ext.products WHERE code = 'P2P'))),
    (8, 'revenue Canva', 'PHP 2,783,000+', 'PHP ' || to_char(c.amount, 'FM9,999,999.00'),
     format('amounts as Xendit sent them (report: revenue); the seed counted PHP 1,000 a sale, '
            'the Canva invoices here average PHP %s', round(ic.average, 2)))
  ) AS x(n, measure, seed_expected, this_run, why)
 ORDER BY x.n;
