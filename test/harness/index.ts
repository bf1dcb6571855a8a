/** The network test harness: one import for tests and benchmarks. See docs/testing.md. */
export * from './errors.js';
export * from './tools.js';
export * from './names.js';
export * from './exec.js';
export * from './process.js';
export * from './lab.js';
export * from './nft.js';
export * from './ping.js';
export * from './topology.js';
export * from './wireguard.js';
export * from './strongswan.js';
export * from './cvlan.js';
export * from './bird.js';
export * from './wait.js';
