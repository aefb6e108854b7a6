-- QA checks an analyst runs in the warehouse: source → link table → target.
-- The target's tables arrive in the warehouse through the target's own ELT
-- pipeline (here: schema erp_elt, which `ferry demo` loads).

-- name: link rows by status
SELECT 'companies' AS sync, status, count(*) AS records FROM link_tables.companies GROUP BY status
UNION ALL
SELECT 'contacts', status, count(*) FROM link_tables.contacts GROUP BY status
ORDER BY 1, 2;

-- name: contacts in scope with no target record (expect none)
SELECT c.id
FROM crm.contacts AS c
LEFT JOIN link_tables.contacts AS l ON l.source_id = c.id
LEFT JOIN erp_elt.people AS p ON p.id = l.target_id
WHERE c.email IS NOT NULL AND p.id IS NULL;

-- name: contacts whose ERP partner is not their CRM company's (expect none)
SELECT c.id AS contact, c.company_id, p.partner_id
FROM crm.contacts AS c
JOIN link_tables.contacts AS lc ON lc.source_id = c.id
JOIN erp_elt.people AS p ON p.id = lc.target_id
JOIN link_tables.companies AS lp ON lp.source_id = c.company_id
WHERE p.partner_id IS DISTINCT FROM lp.target_id;

-- name: a few synced contacts, side by side
SELECT c.id AS crm_id, l.target_id AS erp_id, c.first_name || ' ' || c.last_name AS crm_name, p.full_name AS erp_name, l.status
FROM crm.contacts AS c
JOIN link_tables.contacts AS l ON l.source_id = c.id
JOIN erp_elt.people AS p ON p.id = l.target_id
WHERE c.id IN (1001, 1002, 1151)
ORDER BY c.id;
