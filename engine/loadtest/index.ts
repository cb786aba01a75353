/**
 * The load tester's public surface (`hotpath loadtest` is its CLI): {@link loadtest} runs a test,
 * {@link loadtestCsv} / {@link loadtestHtml} export its result.
 */
export { loadtest, type LoadtestResult, type Percentiles, type TimelineRow, type SpectrumPoint } from './loadtest.js';
export { loadtestCsv, loadtestHtml, CSV_COLUMNS } from './report.js';
export { parseDuration, parseStages, readScenarios, DEFAULTS as LOADTEST_DEFAULTS, type LoadtestOptions, type LoadtestProgress, type Scenario, type Stage } from './options.js';
