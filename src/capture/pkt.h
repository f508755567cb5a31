/* pkt.h -- from a captured link-layer frame to a TCP segment.
 *
 * Pure parsing with no state: link layers (Ethernet with VLAN tags, Linux
 * cooked v1 and v2, BSD loopback/NULL, raw IP), IPv4 and IPv6 (extension
 * headers skipped), then the TCP header. What the snaplen cut is reported,
 * never guessed. */
#ifndef TAGARELA_CAPTURE_PKT_H
#define TAGARELA_CAPTURE_PKT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    CAP_TH_FIN = 0x01,
    CAP_TH_SYN = 0x02,
    CAP_TH_RST = 0x04,
    CAP_TH_PUSH = 0x08,
    CAP_TH_ACK = 0x10,
};

typedef enum cap_pkt_status {
    CAP_PKT_OK = 0,
    CAP_PKT_NOT_TCP,    /* another protocol, or not IP at all: skipped quietly */
    CAP_PKT_FRAGMENT,   /* an IP fragment: not reassembled, counted */
    CAP_PKT_SHORT,      /* cut (or corrupt) before the TCP ports and sequence */
    CAP_PKT_BAD,        /* malformed headers */
    CAP_PKT_LINKTYPE,   /* a link type this decoder does not know */
} cap_pkt_status;

typedef struct cap_pkt {
    uint8_t ipver;              /* 4 or 6 */
    uint8_t flags;              /* CAP_TH_* */
    uint16_t sport, dport;
    uint8_t src[16], dst[16];   /* IPv4 uses the first 4 bytes */
    uint32_t seq, ack;
    const uint8_t *payload;     /* captured TCP payload */
    uint32_t payload_len;       /* bytes of it that were captured */
    uint32_t wire_len;          /* its length on the wire, per the IP header */
    bool truncated;             /* payload_len < wire_len: cut by the snaplen */
} cap_pkt;

/* True for the link types cap_pkt_decode() understands. */
bool cap_pkt_linktype_ok(int linktype);

/* Decodes one frame. caplen is what was captured, wirelen its original
 * length. Fills *out on CAP_PKT_OK only. */
cap_pkt_status cap_pkt_decode(int linktype, const uint8_t *p, uint32_t caplen,
                              uint32_t wirelen, cap_pkt *out);

#endif
