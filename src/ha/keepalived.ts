/**
 * keepalived as a supervised engine (src/supervise/engine.ts): the daemon writes its
 * configuration, starts it in the foreground (`--dont-fork`, VRRP only), restarts it with backoff,
 * and stops only the PID it started. keepalived has no control socket; it is ready once its VRRP
 * child wrote its pid file.
 *
 * keepalived keeps running in its own process group so that a restart of it never takes the
 * daemon along, and it dies with the daemon: SIGTERM on stop, and the parent-death signal the
 * wrapper sets otherwise (a SIGKILLed daemon must not leave a VRRP speaker holding the VIP).
 */

import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { HaConfig } from '../config/model.js';
import { EngineSupervisor, type EngineLogger } from '../supervise/engine.js';
import { renderKeepalivedConf, type KeepalivedPaths } from './keepalived-conf.js';

export interface KeepalivedFiles extends KeepalivedPaths {
  dir: string;
  conf: string;
  pidFile: string;
  vrrpPidFile: string;
}

/** The files of one node's keepalived, all under `<state dir>/ha`. */
export function keepalivedFiles(stateDir: string): KeepalivedFiles {
  const dir = join(stateDir, 'ha');
  return {
    dir,
    conf: join(dir, 'keepalived.conf'),
    notifyFifo: join(dir, 'keepalived.fifo'),
    fenceFile: join(dir, 'fence'),
    pidFile: join(dir, 'keepalived.pid'),
    vrrpPidFile: join(dir, 'keepalived-vrrp.pid'),
  };
}

/** Writes the configuration and an unfenced track_file; returns the supervisor (not started). */
export function keepalivedSupervisor(ha: HaConfig, files: KeepalivedFiles, logger?: EngineLogger): EngineSupervisor {
  mkdirSync(files.dir, { recursive: true, mode: 0o700 });
  // Left by a keepalived that died with a killed daemon; keepalived refuses a pid file naming a live process.
  rmSync(files.pidFile, { force: true });
  rmSync(files.vrrpPidFile, { force: true });
  writeFileSync(files.conf, renderKeepalivedConf(ha, files), { mode: 0o600 });
  if (!existsSync(files.fenceFile)) writeFileSync(files.fenceFile, '0\n', { mode: 0o600 });
  const vrrpPidLive = async (): Promise<boolean> => {
    try {
      const pid = Number.parseInt(readFileSync(files.vrrpPidFile, 'utf8'), 10);
      return Number.isInteger(pid) && pid > 0 && existsSync(`/proc/${pid}`);
    } catch {
      return false;
    }
  };
  const supervisor = new EngineSupervisor({
    name: 'keepalived',
    errorCode: 'CVLAN_ERR_HA',
    argv: [
      'setpriv',
      '--pdeathsig',
      'KILL',
      '--',
      ha.keepalivedPath,
      '--dont-fork',
      '--log-console',
      '--log-detail',
      '--vrrp',
      '--use-file',
      files.conf,
      '--pid',
      files.pidFile,
      '--vrrp_pid',
      files.vrrpPidFile,
    ],
    readyProbe: vrrpPidLive,
    ...(logger ? { logger } : {}),
  });
  supervisor.on('exited', () => {
    rmSync(files.pidFile, { force: true });
    rmSync(files.vrrpPidFile, { force: true });
  });
  return supervisor;
}

/** Puts the fence up ("1": keepalived goes to FAULT and drops the VIP) or takes it down. */
export function writeFence(files: KeepalivedPaths, fenced: boolean): void {
  writeFileSync(files.fenceFile, fenced ? '1\n' : '0\n', { mode: 0o600 });
}
