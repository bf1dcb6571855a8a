/*
 * What the kernel's interfaces for raw IP cost per byte, against ESP-in-UDP with GSO/GRO: one
 * sender and one receiver moving ESP-sized packets (1400 bytes of payload) across a veth pair,
 * no crypto, so only the kernel path differs. Driven by bench/raw-ip-paths.sh (namespaces).
 *
 *   raw-ip-paths tx MODE IFNAME DST_IP DST_MAC SECONDS
 *   raw-ip-paths rx MODE IFNAME SECONDS
 *
 * tx modes: raw     — socket(AF_INET, SOCK_RAW, IPPROTO_ESP) + sendmmsg, 64 per call (today's
 *                     raw ESP sender);
 *           packet  — AF_PACKET SOCK_RAW with PACKET_QDISC_BYPASS + sendmmsg of whole Ethernet
 *                     frames (no routing, netfilter, neighbour or qdisc per packet);
 *           ring    — AF_PACKET TX ring (TPACKET_V2, PACKET_QDISC_BYPASS), 64 frames per send;
 *           xdp     — AF_XDP socket in copy mode (veth has no zero-copy): frames written once
 *                     into a UMEM, 64 TX descriptors per sendto kick; the kernel still builds
 *                     one skb per frame, but without the AF_PACKET socket layer;
 *           udp-gso — UDP with UDP_SEGMENT, 44 segments per send (ESP-in-UDP's sender).
 * rx modes: raw     — socket(AF_INET, SOCK_RAW, IPPROTO_ESP) + recvmmsg, 64 per call;
 *           packet  — AF_PACKET TPACKET_V3 RX ring with a BPF filter for protocol 50 (and a
 *                     raw ESP socket that takes nothing, so the stack sends no ICMP);
 *           xdp     — an XDP program on the veth (driver mode where it attaches) redirects
 *                     protocol 50 to an AF_XDP socket (copy mode) before ip_rcv, so neither the
 *                     receive stack nor its ICMP runs; veth has still built the sender's skb;
 *           udp-gro — UDP with UDP_GRO + recvmmsg of 64 KiB buffers (ESP-in-UDP's receiver).
 * The receiver prints "ready" once set up, then "MODE bytes pkts seconds gbps kpps" for the time
 * between its first and last packet (bytes: ESP, without Ethernet and IP headers).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/bpf.h>
#include <linux/filter.h>
#include <linux/if_link.h>
#include <linux/if_packet.h>
#include <linux/if_xdp.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/udp.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef SOL_UDP
#define SOL_UDP 17
#endif
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif
#ifndef XDP_MAX_TX_SKB_BUDGET
#define XDP_MAX_TX_SKB_BUDGET 9 /* Linux 6.17; older kernels take 32 descriptors per sendto */
#endif

#define PAYLOAD 1400
#define BATCH 64
#define GSO_SEGS 44
#define PORT 4500

static void die(const char *what) {
    int e = errno;
    fprintf(stderr, "%s: %s (errno %d)\n", what, strerror(e), e);
    exit(1);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint16_t csum(const void *data, size_t len) {
    const uint16_t *p = data;
    uint32_t s = 0;
    for (; len > 1; len -= 2) s += *p++;
    if (len) s += *(const uint8_t *)p;
    while (s >> 16) s = (s & 0xffff) + (s >> 16);
    return (uint16_t)~s;
}

/* ESP header (SPI 0x100, sequence) and filler: what the receiver sees is the size, not content. */
static void esp(uint8_t *b, uint32_t seq) {
    memset(b, 0xa5, PAYLOAD);
    uint32_t spi = htonl(0x100), s = htonl(seq);
    memcpy(b, &spi, 4);
    memcpy(b + 4, &s, 4);
}

static size_t frame(uint8_t *f, const uint8_t *smac, const uint8_t *dmac, struct in_addr src,
                    struct in_addr dst, uint32_t seq) {
    struct ether_header *eh = (void *)f;
    memcpy(eh->ether_dhost, dmac, 6);
    memcpy(eh->ether_shost, smac, 6);
    eh->ether_type = htons(ETHERTYPE_IP);
    struct iphdr *ip = (void *)(f + sizeof *eh);
    memset(ip, 0, sizeof *ip);
    ip->version = 4;
    ip->ihl = 5;
    ip->tot_len = htons(sizeof *ip + PAYLOAD);
    ip->id = htons((uint16_t)seq);
    ip->frag_off = htons(IP_DF);
    ip->ttl = 64;
    ip->protocol = IPPROTO_ESP;
    ip->saddr = src.s_addr;
    ip->daddr = dst.s_addr;
    ip->check = csum(ip, sizeof *ip);
    esp((uint8_t *)(ip + 1), seq);
    return sizeof *eh + sizeof *ip + PAYLOAD;
}

static int ifindex_mac(int fd, const char *ifname, uint8_t *mac, struct in_addr *addr) {
    struct ifreq ifr = {0};
    snprintf(ifr.ifr_name, IFNAMSIZ, "%s", ifname);
    if (ioctl(fd, SIOCGIFHWADDR, &ifr) < 0) die("SIOCGIFHWADDR");
    memcpy(mac, ifr.ifr_hwaddr.sa_data, 6);
    if (addr) {
        if (ioctl(fd, SIOCGIFADDR, &ifr) < 0) die("SIOCGIFADDR");
        *addr = ((struct sockaddr_in *)&ifr.ifr_addr)->sin_addr;
    }
    if (ioctl(fd, SIOCGIFINDEX, &ifr) < 0) die("SIOCGIFINDEX");
    return ifr.ifr_ifindex;
}

/* The sender is started once this is out: ESP that arrives before the receiver is set up is
 * answered with ICMP and costs the stack what the case does not measure. */
static void ready(void) {
    printf("ready\n");
    fflush(stdout);
}

static void report(const char *mode, uint64_t bytes, uint64_t pkts, double t0, double t1) {
    double s = t1 > t0 ? t1 - t0 : 0;
    printf("%s %llu %llu %.3f %.3f %.1f\n", mode, (unsigned long long)bytes, (unsigned long long)pkts,
           s, s > 0 ? bytes * 8 / s / 1e9 : 0, s > 0 ? pkts / s / 1e3 : 0);
}

/* AF_XDP. One UMEM of XSK_FRAMES frames per socket (16 MiB, the packet mode's RX ring) and every
 * ring as large, so a frame always has a slot to go back to and no ring can overflow. */
#define XSK_FRAMES 8192
#define XSK_FRAME 2048

struct xring {
    uint32_t *prod, *cons, mask;
    void *desc;
};

struct xsk {
    int fd;
    uint8_t *umem;
    struct xring fill, comp, rx, tx;
};

static void xring_map(int fd, struct xring *r, const struct xdp_ring_offset *o, size_t desc_size,
                      off_t pgoff, const char *what) {
    uint8_t *m = mmap(NULL, o->desc + XSK_FRAMES * desc_size, PROT_READ | PROT_WRITE,
                      MAP_SHARED | MAP_POPULATE, fd, pgoff);
    if (m == MAP_FAILED) die(what);
    r->prod = (uint32_t *)(m + o->producer);
    r->cons = (uint32_t *)(m + o->consumer);
    r->desc = m + o->desc;
    r->mask = XSK_FRAMES - 1;
}

/* Copy mode is asked for outright: veth has no zero-copy, and a silent fallback would hide which
 * path was measured. Bind wants a fill and a completion ring even for a socket that only sends. */
static void xsk_open(struct xsk *x, int ifindex, int rx) {
    x->fd = socket(AF_XDP, SOCK_RAW, 0);
    if (x->fd < 0) die("socket(AF_XDP)");
    size_t len = (size_t)XSK_FRAMES * XSK_FRAME;
    x->umem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (x->umem == MAP_FAILED) die("mmap (UMEM)");
    struct xdp_umem_reg reg;
    memset(&reg, 0, sizeof reg); /* newer kernels read the padding as tx_metadata_len */
    reg.addr = (uintptr_t)x->umem;
    reg.len = len;
    reg.chunk_size = XSK_FRAME;
    if (setsockopt(x->fd, SOL_XDP, XDP_UMEM_REG, &reg, sizeof reg) < 0) die("setsockopt(XDP_UMEM_REG)");
    int n = XSK_FRAMES;
    if (setsockopt(x->fd, SOL_XDP, XDP_UMEM_FILL_RING, &n, sizeof n) < 0)
        die("setsockopt(XDP_UMEM_FILL_RING)");
    if (setsockopt(x->fd, SOL_XDP, XDP_UMEM_COMPLETION_RING, &n, sizeof n) < 0)
        die("setsockopt(XDP_UMEM_COMPLETION_RING)");
    if (setsockopt(x->fd, SOL_XDP, rx ? XDP_RX_RING : XDP_TX_RING, &n, sizeof n) < 0)
        die(rx ? "setsockopt(XDP_RX_RING)" : "setsockopt(XDP_TX_RING)");
    struct xdp_mmap_offsets off;
    socklen_t ol = sizeof off;
    if (getsockopt(x->fd, SOL_XDP, XDP_MMAP_OFFSETS, &off, &ol) < 0) die("getsockopt(XDP_MMAP_OFFSETS)");
    xring_map(x->fd, &x->fill, &off.fr, sizeof(uint64_t), XDP_UMEM_PGOFF_FILL_RING, "mmap (fill ring)");
    xring_map(x->fd, &x->comp, &off.cr, sizeof(uint64_t), XDP_UMEM_PGOFF_COMPLETION_RING,
              "mmap (completion ring)");
    if (rx)
        xring_map(x->fd, &x->rx, &off.rx, sizeof(struct xdp_desc), XDP_PGOFF_RX_RING, "mmap (RX ring)");
    else
        xring_map(x->fd, &x->tx, &off.tx, sizeof(struct xdp_desc), XDP_PGOFF_TX_RING, "mmap (TX ring)");
    struct sockaddr_xdp sx = {.sxdp_family = AF_XDP, .sxdp_flags = XDP_COPY, .sxdp_ifindex = ifindex,
                              .sxdp_queue_id = 0};
    /* The previous case's socket on this queue is released after its process exits (deferred
     * in the kernel): EBUSY for a moment. */
    for (int tries = 0; bind(x->fd, (void *)&sx, sizeof sx) < 0; tries++) {
        if (errno != EBUSY || tries == 100) die("bind(AF_XDP, XDP_COPY, queue 0)");
        usleep(20000);
    }
}

static void tx_xdp(const char *ifname, struct in_addr dst, const uint8_t *dmac, double secs) {
    int ioc = socket(AF_INET, SOCK_DGRAM, 0);
    if (ioc < 0) die("socket");
    uint8_t smac[6];
    struct in_addr src;
    int ifindex = ifindex_mac(ioc, ifname, smac, &src);
    close(ioc);
    struct xsk x;
    xsk_open(&x, ifindex, 0);
    /* Without this, copy mode turns one sendto into at most 32 skbs. */
    unsigned budget = BATCH;
    if (setsockopt(x.fd, SOL_XDP, XDP_MAX_TX_SKB_BUDGET, &budget, sizeof budget) < 0)
        fprintf(stderr, "tx xdp: setsockopt(XDP_MAX_TX_SKB_BUDGET, %u): %s, so 32 frames per sendto\n",
                budget, strerror(errno));
    /* The frames never change, like the packet mode's: the kernel path is what is measured. */
    uint32_t flen = 0;
    for (uint32_t i = 0; i < XSK_FRAMES; i++)
        flen = frame(x.umem + (size_t)i * XSK_FRAME, smac, dmac, src, dst, i + 1);
    const uint32_t fmask = XSK_FRAMES - 1;
    uint64_t free_q[XSK_FRAMES];
    uint32_t free_head = 0, free_tail = XSK_FRAMES;
    for (uint32_t i = 0; i < XSK_FRAMES; i++) free_q[i] = (uint64_t)i * XSK_FRAME;
    struct xdp_desc *td = x.tx.desc;
    const uint64_t *cq = x.comp.desc;
    uint32_t tprod = 0, ccons = 0;
    uint64_t busy = 0;
    double end = now() + secs;
    while (now() < end) {
        for (int k = 0; k < 64; k++) {
            uint32_t done = __atomic_load_n(x.comp.prod, __ATOMIC_ACQUIRE) - ccons;
            for (uint32_t i = 0; i < done; i++) free_q[free_tail++ & fmask] = cq[ccons++ & fmask];
            __atomic_store_n(x.comp.cons, ccons, __ATOMIC_RELEASE);
            uint32_t room = XSK_FRAMES - (tprod - __atomic_load_n(x.tx.cons, __ATOMIC_ACQUIRE));
            uint32_t n = free_tail - free_head;
            if (n > room) n = room;
            if (n > BATCH) n = BATCH;
            for (uint32_t i = 0; i < n; i++)
                td[tprod++ & fmask] = (struct xdp_desc){.addr = free_q[free_head++ & fmask], .len = flen};
            __atomic_store_n(x.tx.prod, tprod, __ATOMIC_RELEASE);
            /* EAGAIN: budget or completion ring used up, the rest stays queued; EBUSY: the
             * device dropped a frame (its descriptor completes all the same). */
            if (sendto(x.fd, NULL, 0, MSG_DONTWAIT, NULL, 0) < 0) {
                if (errno == EBUSY) busy++;
                else if (errno != EAGAIN && errno != ENOBUFS) die("sendto (AF_XDP TX kick)");
            }
        }
    }
    if (busy)
        fprintf(stderr, "tx xdp: %llu frames dropped by the device (sendto EBUSY)\n",
                (unsigned long long)busy);
}

static int sys_bpf(int cmd, union bpf_attr *attr) {
    return (int)syscall(__NR_bpf, cmd, attr, sizeof *attr);
}

#define INSN(c, d, s, o, i) \
    ((struct bpf_insn){.code = (c), .dst_reg = (d), .src_reg = (s), .off = (o), .imm = (i)})

/* ESP over IPv4 → XSKMAP[rx queue] (XDP_PASS if that slot is empty), everything else → the stack. */
static int xdp_prog(int map_fd) {
    enum { PASS = 15 }; /* index of the "r0 = XDP_PASS" below */
    struct bpf_insn prog[] = {
        INSN(BPF_LDX | BPF_MEM | BPF_W, 2, 1, offsetof(struct xdp_md, data), 0),
        INSN(BPF_LDX | BPF_MEM | BPF_W, 3, 1, offsetof(struct xdp_md, data_end), 0),
        INSN(BPF_ALU64 | BPF_MOV | BPF_X, 4, 2, 0, 0),
        INSN(BPF_ALU64 | BPF_ADD | BPF_K, 4, 0, 0, ETHER_HDR_LEN + sizeof(struct iphdr)),
        INSN(BPF_JMP | BPF_JGT | BPF_X, 4, 3, PASS - 5, 0),
        INSN(BPF_LDX | BPF_MEM | BPF_H, 4, 2, offsetof(struct ether_header, ether_type), 0),
        INSN(BPF_JMP | BPF_JNE | BPF_K, 4, 0, PASS - 7, htons(ETHERTYPE_IP)),
        INSN(BPF_LDX | BPF_MEM | BPF_B, 4, 2, ETHER_HDR_LEN + offsetof(struct iphdr, protocol), 0),
        INSN(BPF_JMP | BPF_JNE | BPF_K, 4, 0, PASS - 9, IPPROTO_ESP),
        INSN(BPF_LDX | BPF_MEM | BPF_W, 2, 1, offsetof(struct xdp_md, rx_queue_index), 0),
        INSN(BPF_LD | BPF_DW | BPF_IMM, 1, BPF_PSEUDO_MAP_FD, 0, map_fd),
        INSN(0, 0, 0, 0, 0),
        INSN(BPF_ALU64 | BPF_MOV | BPF_K, 3, 0, 0, XDP_PASS),
        INSN(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_redirect_map),
        INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
        INSN(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, XDP_PASS), /* PASS */
        INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
    };
    static char log[65536];
    union bpf_attr a;
    memset(&a, 0, sizeof a);
    a.prog_type = BPF_PROG_TYPE_XDP;
    a.expected_attach_type = BPF_XDP;
    a.insns = (uintptr_t)prog;
    a.insn_cnt = sizeof prog / sizeof prog[0];
    a.license = (uintptr_t)"GPL";
    a.log_buf = (uintptr_t)log;
    a.log_size = sizeof log;
    a.log_level = 1;
    int fd = sys_bpf(BPF_PROG_LOAD, &a);
    if (fd < 0) {
        int e = errno;
        fprintf(stderr, "verifier log:\n%s\n", log);
        errno = e;
        die("bpf(BPF_PROG_LOAD, BPF_PROG_TYPE_XDP)");
    }
    return fd;
}

/* RTM_SETLINK with IFLA_XDP {FD, FLAGS}: for kernels without BPF links for XDP (before 5.9). */
static int xdp_netlink(int ifindex, int prog_fd, uint32_t flags) {
    struct {
        struct nlmsghdr nh;
        struct ifinfomsg ifi;
        uint8_t attrs[3 * NLA_HDRLEN + 8];
    } req;
    memset(&req, 0, sizeof req);
    struct nlattr *nest = (void *)req.attrs, *fd = nest + 1, *fl = (void *)((uint8_t *)fd + NLA_HDRLEN + 4);
    *nest = (struct nlattr){.nla_len = sizeof req.attrs, .nla_type = IFLA_XDP | NLA_F_NESTED};
    *fd = (struct nlattr){.nla_len = NLA_HDRLEN + 4, .nla_type = IFLA_XDP_FD};
    memcpy(fd + 1, &prog_fd, 4);
    *fl = (struct nlattr){.nla_len = NLA_HDRLEN + 4, .nla_type = IFLA_XDP_FLAGS};
    memcpy(fl + 1, &flags, 4);
    req.nh = (struct nlmsghdr){.nlmsg_len = sizeof req, .nlmsg_type = RTM_SETLINK,
                               .nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK, .nlmsg_seq = 1};
    req.ifi = (struct ifinfomsg){.ifi_family = AF_UNSPEC, .ifi_index = ifindex};
    int nl = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (nl < 0) return -errno;
    struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
    int err = -EPROTO;
    char buf[4096];
    if (sendto(nl, &req, sizeof req, 0, (void *)&sa, sizeof sa) < 0) {
        err = -errno;
    } else {
        ssize_t got = recv(nl, buf, sizeof buf, 0);
        const struct nlmsghdr *nh = (void *)buf;
        if (got < 0)
            err = -errno;
        else if (got >= (ssize_t)NLMSG_LENGTH(sizeof(struct nlmsgerr)) && nh->nlmsg_type == NLMSG_ERROR)
            err = ((const struct nlmsgerr *)NLMSG_DATA(nh))->error;
    }
    close(nl);
    return err;
}

static int nl_ifindex;
static uint32_t nl_flags;

static void xdp_netlink_detach(void) {
    xdp_netlink(nl_ifindex, -1, nl_flags);
}

static void on_signal(int sig) {
    xdp_netlink_detach();
    _exit(128 + sig);
}

/* Driver mode first: that is the path a real NIC would take and veth implements it. A BPF link
 * detaches when the process exits, however it exits; the netlink attachment is undone at exit. */
static void xdp_attach(int ifindex, int prog_fd, const char *ifname) {
    static const struct { uint32_t flag; const char *name; } modes[] = {
        {XDP_FLAGS_DRV_MODE, "driver (native)"}, {XDP_FLAGS_SKB_MODE, "generic (skb)"}};
    for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
        union bpf_attr a;
        memset(&a, 0, sizeof a);
        a.link_create.prog_fd = prog_fd;
        a.link_create.target_ifindex = ifindex;
        a.link_create.attach_type = BPF_XDP;
        a.link_create.flags = modes[m].flag;
        if (sys_bpf(BPF_LINK_CREATE, &a) >= 0) {
            fprintf(stderr, "rx xdp: %s mode on %s, BPF link\n", modes[m].name, ifname);
            return;
        }
        fprintf(stderr, "rx xdp: bpf(BPF_LINK_CREATE, BPF_XDP, %s mode): %s (errno %d)\n", modes[m].name,
                strerror(errno), errno);
        int err = xdp_netlink(ifindex, prog_fd, modes[m].flag | XDP_FLAGS_UPDATE_IF_NOEXIST);
        if (!err) {
            nl_ifindex = ifindex;
            nl_flags = modes[m].flag;
            atexit(xdp_netlink_detach);
            signal(SIGINT, on_signal);
            signal(SIGTERM, on_signal);
            fprintf(stderr, "rx xdp: %s mode on %s, netlink IFLA_XDP\n", modes[m].name, ifname);
            return;
        }
        fprintf(stderr, "rx xdp: RTM_SETLINK IFLA_XDP (%s mode): %s (errno %d)\n", modes[m].name,
                strerror(-err), -err);
    }
    fprintf(stderr, "rx xdp: no XDP attach mode worked on %s\n", ifname);
    exit(1);
}

static void rx_xdp(const char *ifname, double secs) {
    int ifindex = if_nametoindex(ifname);
    if (!ifindex) die("if_nametoindex");
    struct xsk x;
    xsk_open(&x, ifindex, 1);
    uint64_t *fq = x.fill.desc;
    for (uint32_t i = 0; i < XSK_FRAMES; i++) fq[i] = (uint64_t)i * XSK_FRAME;
    uint32_t fprod = XSK_FRAMES, rcons = 0;
    __atomic_store_n(x.fill.prod, fprod, __ATOMIC_RELEASE);
    union bpf_attr a;
    memset(&a, 0, sizeof a);
    a.map_type = BPF_MAP_TYPE_XSKMAP;
    a.key_size = 4;
    a.value_size = 4;
    a.max_entries = 1; /* veth's one real RX queue */
    int map = sys_bpf(BPF_MAP_CREATE, &a);
    if (map < 0) die("bpf(BPF_MAP_CREATE, BPF_MAP_TYPE_XSKMAP)");
    uint32_t key = 0, val = x.fd;
    memset(&a, 0, sizeof a);
    a.map_fd = map;
    a.key = (uintptr_t)&key;
    a.value = (uintptr_t)&val;
    if (sys_bpf(BPF_MAP_UPDATE_ELEM, &a) < 0) die("bpf(BPF_MAP_UPDATE_ELEM, XSKMAP[0] = AF_XDP socket)");
    /* Attached last, so that no ESP reaches the stack (and its ICMP) while the socket is set up. */
    xdp_attach(ifindex, xdp_prog(map), ifname);
    ready();
    uint64_t bytes = 0, pkts = 0;
    double t0 = 0, t1 = 0, end = now() + secs;
    const struct xdp_desc *rd = x.rx.desc;
    while (now() < end) {
        uint32_t n = __atomic_load_n(x.rx.prod, __ATOMIC_ACQUIRE) - rcons;
        if (!n) {
            struct pollfd pfd = {.fd = x.fd, .events = POLLIN};
            poll(&pfd, 1, 200);
            continue;
        }
        double t = now();
        if (!t0) t0 = t;
        t1 = t;
        /* Every descriptor ready is one batch; its frames go straight back to the fill ring. */
        for (uint32_t i = 0; i < n; i++) {
            const struct xdp_desc *d = &rd[rcons++ & x.rx.mask];
            bytes += d->len - sizeof(struct ether_header) - sizeof(struct iphdr);
            fq[fprod++ & x.fill.mask] = d->addr & ~(uint64_t)(XSK_FRAME - 1);
        }
        pkts += n;
        __atomic_store_n(x.rx.cons, rcons, __ATOMIC_RELEASE);
        __atomic_store_n(x.fill.prod, fprod, __ATOMIC_RELEASE);
    }
    struct xdp_statistics st;
    socklen_t sl = sizeof st;
    memset(&st, 0, sizeof st);
    if (getsockopt(x.fd, SOL_XDP, XDP_STATISTICS, &st, &sl) == 0 &&
        (st.rx_dropped || st.rx_ring_full || st.rx_fill_ring_empty_descs || st.rx_invalid_descs))
        fprintf(stderr, "rx xdp: dropped %llu, RX ring full %llu, fill ring empty %llu, invalid %llu\n",
                (unsigned long long)st.rx_dropped, (unsigned long long)st.rx_ring_full,
                (unsigned long long)st.rx_fill_ring_empty_descs, (unsigned long long)st.rx_invalid_descs);
    report("xdp", bytes, pkts, t0, t1);
}

static void tx(const char *mode, const char *ifname, const char *dst_s, const char *dmac_s,
               double secs) {
    struct in_addr dst;
    uint8_t dmac[6], smac[6];
    if (inet_pton(AF_INET, dst_s, &dst) != 1) die("DST_IP");
    if (sscanf(dmac_s, "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &dmac[0], &dmac[1], &dmac[2], &dmac[3],
               &dmac[4], &dmac[5]) != 6) {
        fprintf(stderr, "DST_MAC: want aa:bb:cc:dd:ee:ff\n");
        exit(2);
    }
    static uint8_t bufs[BATCH][PAYLOAD + 64];
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    uint32_t seq = 1;
    double end = now() + secs;
    if (!strcmp(mode, "raw") || !strcmp(mode, "udp-gso")) {
        int udp = !strcmp(mode, "udp-gso");
        int fd = udp ? socket(AF_INET, SOCK_DGRAM, 0) : socket(AF_INET, SOCK_RAW, IPPROTO_ESP);
        if (fd < 0) die("socket");
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr = dst, .sin_port = htons(udp ? PORT : 0)};
        if (connect(fd, (void *)&sa, sizeof sa) < 0) die("connect");
        if (udp) {
            int seg = PAYLOAD;
            if (setsockopt(fd, SOL_UDP, UDP_SEGMENT, &seg, sizeof seg) < 0) die("UDP_SEGMENT");
            static uint8_t big[PAYLOAD * GSO_SEGS];
            for (int i = 0; i < GSO_SEGS; i++) esp(big + i * PAYLOAD, seq++);
            while (now() < end)
                for (int k = 0; k < 64; k++)
                    if (send(fd, big, sizeof big, 0) < 0) die("send");
            return;
        }
        for (int i = 0; i < BATCH; i++) {
            esp(bufs[i], seq++);
            iov[i] = (struct iovec){bufs[i], PAYLOAD};
            msgs[i] = (struct mmsghdr){.msg_hdr = {.msg_iov = &iov[i], .msg_iovlen = 1}};
        }
        while (now() < end)
            for (int k = 0; k < 64; k++)
                if (sendmmsg(fd, msgs, BATCH, 0) < 0) die("sendmmsg");
        return;
    }
    if (!strcmp(mode, "xdp")) {
        tx_xdp(ifname, dst, dmac, secs);
        return;
    }
    int fd = socket(AF_PACKET, SOCK_RAW, 0);
    if (fd < 0) die("AF_PACKET socket");
    struct in_addr src;
    int ifindex = ifindex_mac(fd, ifname, smac, &src);
    int one = 1;
    if (setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one) < 0) die("PACKET_QDISC_BYPASS");
    struct sockaddr_ll ll = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_IP), .sll_ifindex = ifindex};
    if (!strcmp(mode, "packet")) {
        if (bind(fd, (void *)&ll, sizeof ll) < 0) die("bind");
        for (int i = 0; i < BATCH; i++) {
            size_t n = frame(bufs[i], smac, dmac, src, dst, seq++);
            iov[i] = (struct iovec){bufs[i], n};
            msgs[i] = (struct mmsghdr){.msg_hdr = {.msg_iov = &iov[i], .msg_iovlen = 1}};
        }
        while (now() < end)
            for (int k = 0; k < 64; k++)
                if (sendmmsg(fd, msgs, BATCH, 0) < 0) die("sendmmsg");
        return;
    }
    if (strcmp(mode, "ring")) {
        fprintf(stderr, "tx MODE: raw, packet, ring, xdp or udp-gso\n");
        exit(2);
    }
    int v = TPACKET_V2;
    if (setsockopt(fd, SOL_PACKET, PACKET_VERSION, &v, sizeof v) < 0) die("PACKET_VERSION");
    struct tpacket_req req = {.tp_block_size = 1 << 16, .tp_block_nr = 16, .tp_frame_size = 2048};
    req.tp_frame_nr = req.tp_block_size / req.tp_frame_size * req.tp_block_nr;
    if (setsockopt(fd, SOL_PACKET, PACKET_TX_RING, &req, sizeof req) < 0) die("PACKET_TX_RING");
    if (bind(fd, (void *)&ll, sizeof ll) < 0) die("bind");
    size_t ring_len = (size_t)req.tp_block_size * req.tp_block_nr;
    uint8_t *ring = mmap(NULL, ring_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (ring == MAP_FAILED) die("mmap");
    unsigned slot = 0;
    const size_t data_off = TPACKET2_HDRLEN - sizeof(struct sockaddr_ll);
    while (now() < end) {
        for (int k = 0; k < 64; k++) {
            for (int i = 0; i < BATCH; i++) {
                struct tpacket2_hdr *h = (void *)(ring + (size_t)slot * req.tp_frame_size);
                while (__atomic_load_n(&h->tp_status, __ATOMIC_ACQUIRE) != TP_STATUS_AVAILABLE) {
                    struct pollfd pfd = {.fd = fd, .events = POLLOUT};
                    poll(&pfd, 1, 10);
                }
                h->tp_len = frame((uint8_t *)h + data_off, smac, dmac, src, dst, seq++);
                __atomic_store_n(&h->tp_status, TP_STATUS_SEND_REQUEST, __ATOMIC_RELEASE);
                slot = (slot + 1) % req.tp_frame_nr;
            }
            if (send(fd, NULL, 0, 0) < 0) die("send (TX ring)");
        }
    }
}

static void rx(const char *mode, const char *ifname, double secs) {
    uint64_t bytes = 0, pkts = 0;
    double t0 = 0, t1 = 0, end = now() + secs;
    if (!strcmp(mode, "raw") || !strcmp(mode, "udp-gro")) {
        int udp = !strcmp(mode, "udp-gro");
        int fd = udp ? socket(AF_INET, SOCK_DGRAM, 0) : socket(AF_INET, SOCK_RAW, IPPROTO_ESP);
        if (fd < 0) die("socket");
        int sz = 8 << 20, one = 1;
        setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof sz);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(udp ? PORT : 0)};
        if (bind(fd, (void *)&sa, sizeof sa) < 0) die("bind");
        if (udp && setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof one) < 0) die("UDP_GRO");
        /* recvmmsg's own timeout is only checked after a datagram arrives. */
        struct timeval rto = {0, 200000};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &rto, sizeof rto);
        ready();
        size_t cap = udp ? 65536 : 2048;
        uint8_t *buf = malloc(cap * BATCH);
        struct mmsghdr msgs[BATCH];
        struct iovec iov[BATCH];
        char cmsg[BATCH][64];
        while (now() < end) {
            for (int i = 0; i < BATCH; i++) {
                iov[i] = (struct iovec){buf + i * cap, cap};
                msgs[i] = (struct mmsghdr){.msg_hdr = {.msg_iov = &iov[i], .msg_iovlen = 1,
                                                       .msg_control = cmsg[i], .msg_controllen = 64}};
            }
            int n = recvmmsg(fd, msgs, BATCH, MSG_WAITFORONE, NULL);
            if (n <= 0) continue;
            double t = now();
            if (!t0) t0 = t;
            t1 = t;
            for (int i = 0; i < n; i++) {
                size_t len = msgs[i].msg_len;
                bytes += udp ? len : len - sizeof(struct iphdr);
                uint16_t seg = 0;
                for (struct cmsghdr *c = CMSG_FIRSTHDR(&msgs[i].msg_hdr); c;
                     c = CMSG_NXTHDR(&msgs[i].msg_hdr, c))
                    if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) memcpy(&seg, CMSG_DATA(c), 2);
                pkts += seg ? (len + seg - 1) / seg : 1;
            }
        }
        report(mode, bytes, pkts, t0, t1);
        return;
    }
    if (!strcmp(mode, "xdp")) {
        rx_xdp(ifname, secs);
        return;
    }
    if (strcmp(mode, "packet")) {
        fprintf(stderr, "rx MODE: raw, packet, xdp or udp-gro\n");
        exit(2);
    }
    /* A raw ESP socket that takes nothing: the stack delivers to it, so it sends no "protocol
     * unreachable" for what the ring already has. */
    int sink = socket(AF_INET, SOCK_RAW, IPPROTO_ESP);
    struct sock_filter none[] = {BPF_STMT(BPF_RET | BPF_K, 0)};
    struct sock_fprog pnone = {1, none};
    if (sink < 0 || setsockopt(sink, SOL_SOCKET, SO_ATTACH_FILTER, &pnone, sizeof pnone) < 0) die("sink");
    int fd = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_IP));
    if (fd < 0) die("AF_PACKET socket");
    uint8_t mac[6];
    int ifindex = ifindex_mac(fd, ifname, mac, NULL);
    /* Ethernet frame: IP protocol at offset 23. */
    struct sock_filter esp_only[] = {
        BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 23),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, IPPROTO_ESP, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, 0x40000),
        BPF_STMT(BPF_RET | BPF_K, 0),
    };
    struct sock_fprog pesp = {4, esp_only};
    if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &pesp, sizeof pesp) < 0) die("filter");
    int v = TPACKET_V3;
    if (setsockopt(fd, SOL_PACKET, PACKET_VERSION, &v, sizeof v) < 0) die("PACKET_VERSION");
    struct tpacket_req3 req = {.tp_block_size = 1 << 20, .tp_block_nr = 16, .tp_frame_size = 2048,
                               .tp_retire_blk_tov = 1};
    req.tp_frame_nr = req.tp_block_size / req.tp_frame_size * req.tp_block_nr;
    if (setsockopt(fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof req) < 0) die("PACKET_RX_RING");
    uint8_t *ring = mmap(NULL, (size_t)req.tp_block_size * req.tp_block_nr, PROT_READ | PROT_WRITE,
                         MAP_SHARED | MAP_LOCKED, fd, 0);
    if (ring == MAP_FAILED) die("mmap");
    struct sockaddr_ll ll = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_IP), .sll_ifindex = ifindex};
    if (bind(fd, (void *)&ll, sizeof ll) < 0) die("bind");
    ready();
    unsigned blk = 0;
    while (now() < end) {
        struct tpacket_block_desc *b = (void *)(ring + (size_t)blk * req.tp_block_size);
        if (!(__atomic_load_n(&b->hdr.bh1.block_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER)) {
            struct pollfd pfd = {.fd = fd, .events = POLLIN | POLLERR};
            poll(&pfd, 1, 200);
            continue;
        }
        double t = now();
        if (!t0) t0 = t;
        t1 = t;
        struct tpacket3_hdr *h = (void *)((uint8_t *)b + b->hdr.bh1.offset_to_first_pkt);
        for (unsigned i = 0; i < b->hdr.bh1.num_pkts; i++) {
            bytes += h->tp_len - sizeof(struct ether_header) - sizeof(struct iphdr);
            pkts++;
            h = (void *)((uint8_t *)h + h->tp_next_offset);
        }
        __atomic_store_n(&b->hdr.bh1.block_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
        blk = (blk + 1) % req.tp_block_nr;
    }
    report(mode, bytes, pkts, t0, t1);
}

int main(int argc, char **argv) {
    if (argc == 7 && !strcmp(argv[1], "tx")) {
        tx(argv[2], argv[3], argv[4], argv[5], atof(argv[6]));
        return 0;
    }
    if (argc == 5 && !strcmp(argv[1], "rx")) {
        rx(argv[2], argv[3], atof(argv[4]));
        return 0;
    }
    fprintf(stderr, "usage: raw-ip-paths tx MODE IFNAME DST_IP DST_MAC SECONDS | rx MODE IFNAME SECONDS\n");
    return 2;
}
