#!/usr/bin/env python3
"""The lab ISP's propagation delay (lab.sh up -r RTT_MS): forwards every
frame between two interfaces of the ISP namespace, each way after a fixed
delay, in place of the ISP's bridge. The kernel here has no netem (nor fq
for EDT-based delay), so a realistic base round trip (the 30 ms of an
office's Internet path, the 600 ms of a geostationary hop) comes from
here. The line's rate and buffer stay the tbf on each interface's egress,
which the frames this sends go through.

    delayline.py IFACE_A IFACE_B ONE_WAY_MS

Order is kept (a constant delay); frames the tbf refuses (its buffer full)
are dropped, as the line's buffer drops them. Stops on SIGTERM/SIGINT."""
import collections
import select
import signal
import socket
import sys
import time

ETH_P_ALL = 0x0003
PACKET_IGNORE_OUTGOING = 23
SOL_PACKET = 263


def open_port(name):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
    s.bind((name, 0))
    s.setblocking(False)
    return s


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    a, b = open_port(sys.argv[1]), open_port(sys.argv[2])
    delay = float(sys.argv[3]) / 1000.0
    # Frames waiting, per output port: (due, frame), in arrival order.
    pending = {a: collections.deque(), b: collections.deque()}
    peer = {a: b, b: a}
    running = [True]

    def stop(*_):
        running[0] = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while running[0]:
        now = time.monotonic()
        for out, q in pending.items():
            while q and q[0][0] <= now:
                _, frame = q.popleft()
                try:
                    out.send(frame)
                except OSError:
                    pass  # the line's buffer is full: dropped there
        due = min((q[0][0] for q in pending.values() if q), default=now + 0.1)
        try:
            ready, _, _ = select.select([a, b], [], [], max(0.0, due - time.monotonic()))
        except InterruptedError:
            continue
        now = time.monotonic()
        for s in ready:
            q = pending[peer[s]]
            for _ in range(64):
                try:
                    frame = s.recv(65535)
                except BlockingIOError:
                    break
                q.append((now + delay, frame))


if __name__ == "__main__":
    main()
