# The classic admin script that deploy/lab/bench.sh and steady.sh compare
# qosd with: kernel HTB on the gateway at UP_Q/DOWN_Q Mbit/s (set by the
# caller, as is x: run a command in a lab node), u32 port filters for the
# lab's traffic tools, pfifo leaves. Sourced, not run.
# shellcheck shell=bash

# The classic admin script: HTB at 95% with u32 port filters, pfifo leaves.
htb_on() {
  for spec in "wan0 $UP_Q" "lan0 $DOWN_Q"; do
    set -- $spec; local dev=$1 rate=$2
    x gw tc qdisc replace dev $dev root handle 1: htb default 30
    x gw tc class add dev $dev parent 1: classid 1:1 htb rate ${rate}mbit ceil ${rate}mbit
    x gw tc class add dev $dev parent 1:1 classid 1:10 htb rate $((rate / 10 + 1))mbit ceil ${rate}mbit prio 0
    x gw tc class add dev $dev parent 1:1 classid 1:20 htb rate $((rate * 3 / 10))mbit ceil ${rate}mbit prio 1
    x gw tc class add dev $dev parent 1:1 classid 1:30 htb rate $((rate * 3 / 10))mbit ceil ${rate}mbit prio 2
    x gw tc class add dev $dev parent 1:1 classid 1:40 htb rate 1mbit ceil ${rate}mbit prio 3
    for c in 10 20 30 40; do x gw tc qdisc add dev $dev parent 1:$c handle $c: pfifo; done
    x gw tc filter add dev $dev parent 1: protocol ip prio 1 u32 match ip dport 5004 0xffff flowid 1:10
    x gw tc filter add dev $dev parent 1: protocol ip prio 1 u32 match ip sport 5004 0xffff flowid 1:10
    for port in 5301 5302; do
      x gw tc filter add dev $dev parent 1: protocol ip prio 2 u32 match ip dport $port 0xffff flowid 1:20
      x gw tc filter add dev $dev parent 1: protocol ip prio 2 u32 match ip sport $port 0xffff flowid 1:20
    done
    for port in 5201 5202; do
      x gw tc filter add dev $dev parent 1: protocol ip prio 3 u32 match ip dport $port 0xffff flowid 1:40
      x gw tc filter add dev $dev parent 1: protocol ip prio 3 u32 match ip sport $port 0xffff flowid 1:40
    done
  done
}
htb_off() { for dev in wan0 lan0; do x gw tc qdisc del dev $dev root 2>/dev/null || true; done; }
