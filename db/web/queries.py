"""The SQL behind the catalog's web pages: one view and the canned queries.

The view is created as a TEMP view on each read-only connection (see
``echolab.db.web.plugin``), so browsing never writes to the catalog and the schema
stays the one in ``db/records.py``.
"""

from __future__ import annotations

CAPTURE_LIST_VIEW = "capture_list"

# One row per capture with its campaign's name, for faceting by name.
CAPTURE_LIST_SQL = f"""
CREATE TEMP VIEW IF NOT EXISTS {CAPTURE_LIST_VIEW} AS
SELECT x.id, x.label, x.status, cp.name AS campaign, x.started_at, x.packet_count, x.size_bytes,
       x.reason, x.path AS pcap, x.sha256, x.device_ip, x.synthetic
FROM main.captures AS x JOIN main.campaigns AS cp ON cp.id = x.campaign_id
"""

# Per campaign and class: good captures against the campaign's target. Classes a
# campaign planned but has no capture of yet show up with ok = 0.
CAMPAIGN_PROGRESS_SQL = """
WITH pairs AS (
  SELECT c.id AS campaign_id, j.value AS label FROM campaigns AS c, json_each(c.classes) AS j
  UNION
  SELECT campaign_id, label FROM captures
),
counts AS (
  SELECT p.campaign_id, p.label,
         count(CASE WHEN x.status = 'ok' THEN 1 END) AS ok,
         count(CASE WHEN x.status = 'failed' THEN 1 END) AS failed,
         count(CASE WHEN x.status = 'discarded' THEN 1 END) AS discarded
  FROM pairs AS p
  LEFT JOIN captures AS x ON x.campaign_id = p.campaign_id AND x.label = p.label
  GROUP BY p.campaign_id, p.label
)
SELECT cp.name AS campaign, n.label AS class, n.ok, cp.target_per_class AS target,
       max(cp.target_per_class - n.ok, 0) AS remaining,
       round(100.0 * n.ok / nullif(cp.target_per_class, 0), 1) AS percent,
       n.failed, n.discarded, cp.status AS campaign_status
FROM counts AS n JOIN campaigns AS cp ON cp.id = n.campaign_id
WHERE :campaign = '' OR cp.name = :campaign
ORDER BY cp.id, n.label
"""

# Failed attempts grouped by the kind of failure: the text of the reason before
# its first ':' ("no-response: ..." -> "no-response"), as echolab.db.checks counts them.
FAILURES_BY_REASON_SQL = """
SELECT coalesce(nullif(trim(CASE WHEN instr(reason, ':') > 0 THEN substr(reason, 1, instr(reason, ':') - 1)
                                 ELSE reason END), ''), 'unknown') AS reason,
       count(*) AS failures,
       group_concat(DISTINCT label) AS classes,
       min(started_at) AS first,
       max(started_at) AS last
FROM captures
WHERE status = 'failed'
GROUP BY 1
ORDER BY failures DESC, reason
"""
