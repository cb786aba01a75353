/**
 * The shipped monitoring assets (monitoring/alerts.yml, monitoring/dashboard.json): the rules pass
 * `promtool check rules`, the dashboard has the structure Grafana imports (checked field by field
 * below), and every metric either of them names exists in the /metrics of a running service with
 * Redis and every component in use — so a renamed metric breaks this test, not a dashboard.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { SERVE_DEFAULTS } from '../../engine/server/config.js';
import { startService } from '../../engine/server/server.js';
import { REDIS_URL, sharedRedisReachable } from '../redis/servers.js';
import { silentLog } from '../helpers.js';

const RULES = new URL('../../monitoring/alerts.yml', import.meta.url).pathname;
const DASHBOARD = new URL('../../monitoring/dashboard.json', import.meta.url).pathname;
const hasPromtool = spawnSync('promtool', ['--version'], { stdio: 'ignore' }).status === 0;
const reachable = await sharedRedisReachable('monitoring assets');

interface Panel {
  id: number;
  type: string;
  title: string;
  gridPos: { x: number; y: number; w: number; h: number };
  datasource: { type: string; uid: string };
  targets: Array<{ refId: string; expr: string }>;
}

function metricNames(text: string): Set<string> {
  return new Set(text.match(/\bhotpath_[a-z0-9_]+/g) ?? []);
}

describe('monitoring assets', () => {
  it.runIf(hasPromtool || process.env.CI === 'true')('the alerting rules pass promtool check rules', () => {
    const out = execFileSync('promtool', ['check', 'rules', RULES], { encoding: 'utf8' });
    expect(out).toMatch(/SUCCESS: \d+ rules found/);
  });

  it('the dashboard is a Grafana dashboard: unique panel ids, a 24-column grid, a Prometheus query per target', () => {
    const d = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as { title: string; uid: string; schemaVersion: number; panels: Panel[]; templating: { list: Array<{ name: string; type: string }> } };
    expect(typeof d.title).toBe('string');
    expect(d.uid).toMatch(/^[A-Za-z0-9_-]{1,40}$/);
    expect(Number.isInteger(d.schemaVersion)).toBe(true);
    expect(d.templating.list.some((v) => v.name === 'datasource' && v.type === 'datasource')).toBe(true);
    expect(d.panels.length).toBeGreaterThan(5);
    const ids = new Set<number>();
    for (const p of d.panels) {
      expect(Number.isInteger(p.id) && !ids.has(p.id)).toBe(true);
      ids.add(p.id);
      expect(['timeseries', 'stat', 'gauge', 'table']).toContain(p.type);
      expect(p.title.length).toBeGreaterThan(0);
      const g = p.gridPos;
      for (const v of [g.x, g.y, g.w, g.h]) expect(Number.isInteger(v) && v >= 0).toBe(true);
      expect(g.x + g.w).toBeLessThanOrEqual(24);
      expect(p.datasource).toEqual({ type: 'prometheus', uid: '${datasource}' });
      expect(p.targets.length).toBeGreaterThan(0);
      for (const t of p.targets) {
        expect(t.refId).toMatch(/^[A-Z]$/);
        expect(t.expr).toMatch(/hotpath_/);
      }
    }
  });

  it.runIf(reachable)('every metric the rules and the dashboard name exists in a running service\'s /metrics', async () => {
    const s = await startService({ ...SERVE_DEFAULTS, port: 0, workers: 1, redisUrl: REDIS_URL }, silentLog);
    try {
      await (await fetch(`${s.url}/process`, { method: 'POST', body: 'monitoring' })).arrayBuffer();
      const q = s.engine.queue('monitored', { handler: () => undefined });
      await q.submit(1).result;
      const exposed = metricNames(await (await fetch(`${s.url}/metrics`)).text());
      const named = new Set([...metricNames(readFileSync(RULES, 'utf8')), ...metricNames(readFileSync(DASHBOARD, 'utf8'))]);
      const missing = [...named].filter((n) => !exposed.has(n));
      expect(missing).toEqual([]);
      expect(named.size).toBeGreaterThan(10);
    } finally {
      await s.close();
    }
  });
});
