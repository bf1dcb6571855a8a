#!/usr/bin/env node
/**
 * cvlan-wireguard — `cvlan-vrouter wireguard` with wireguard-go's calling convention
 * (`cvlan-wireguard [-f] IFNAME`), so that
 *
 *   WG_QUICK_USERSPACE_IMPLEMENTATION=cvlan-wireguard wg-quick up wg0
 *
 * brings up wg0 on this data plane: it goes to the background once the UAPI socket answers, and
 * `wg-quick down wg0` ends it by deleting the interface.
 */
import { exitWith } from './args.js';
import { main } from './wireguard.js';

exitWith('cvlan-wireguard', main(process.argv.slice(2), process.env, []));
