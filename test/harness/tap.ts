/** Glue between labs and tap tests. */
import type { Test } from 'tap';
import { Lab, type LabOptions } from './lab.js';

/**
 * A lab torn down when the test ends, also when it fails or throws. Tests that want to assert a
 * clean teardown call `closeLab(t, lab)` at the end of their body (assertions inside tap's
 * teardown callbacks come too late).
 */
export function useLab(t: Test, opts: LabOptions = {}): Lab {
  const lab = Lab.create(opts);
  t.teardown(async () => {
    await lab.teardown();
  });
  return lab;
}

/** Tears the lab down now and asserts every undo step succeeded. */
export async function closeLab(t: Test, lab: Lab): Promise<void> {
  const r = await lab.teardown();
  t.same(r.errors, [], 'lab torn down cleanly');
}
