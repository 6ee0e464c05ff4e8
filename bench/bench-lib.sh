# SPDX-License-Identifier: BSD-3-Clause
# bench-lib.sh — helpers shared by run-bench and run-remote-bench (sourced).
#
# WHAT: starting and waiting for servers, making TLS certificates, reading
# fio's JSON, formatting values and ratios, and drawing a table as grouped
# bars with gnuplot.
# WHY: the two benchmarks start servers, run fio and print tables the same
# way; one copy of each helper keeps them from drifting apart.
# INVARIANTS: the caller sets `prog` (its name, for messages) and `tmp` (its
# private temp dir, holding every server's stderr as $tmp/NAME.err) before
# calling anything here, and `set -euo pipefail` is in force.  Nothing here
# starts a process that outlives its call.
# FAILURE: bench_die prints "PROG: message" and exits 1 (the caller's EXIT
# trap stops its servers).

bench_die () { echo "$prog: $*" >&2; exit 1; }

# bench_need_fio: fio with the nbd engine, nbdinfo, python3 (sets $python).
bench_need_fio () {
  local tool
  for tool in fio nbdinfo; do
    command -v "$tool" >/dev/null ||
      bench_die "$tool is not installed (apt-get install fio libnbd-bin)"
  done
  fio --enghelp=nbd >/dev/null 2>&1 || bench_die "this fio has no nbd ioengine"
  if [ -x /usr/bin/python3 ]; then python=/usr/bin/python3; else python=python3; fi
  command -v "$python" >/dev/null ||
    bench_die "python3 is needed to read fio's JSON output"
}

# bench_wait_ready NAME PID PIDFILE URI: until the server has written its
# pidfile and answers a connection (nbdinfo --size), at most 30 s.
bench_wait_ready () {
  local name=$1 pid=$2 pidfile=$3 u=$4 i
  for ((i = 0; i < 300; i++)); do
    kill -0 "$pid" 2>/dev/null ||
      bench_die "$name exited at startup: $(tail -n 5 "$tmp/$name.err" 2>/dev/null)"
    if [ -s "$pidfile" ] && nbdinfo --size "$u" >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.1
  done
  bench_die "$name did not become ready within 30 s"
}

# bench_make_certs DIR: a CA and a server certificate for localhost in DIR
# (ca-cert.pem, server-cert.pem, server-key.pem: a certificates directory
# for nbdcached, nbdkit and qemu-nbd), made with openssl the way the client
# tests make theirs (client-tests/functions.sh, make_x509_certs).
bench_make_certs () {
  local d=$1
  command -v openssl >/dev/null ||
    bench_die "openssl is needed for the TLS rows (apt-get install openssl)"
  mkdir -p "$d" || bench_die "mkdir $d"
  ( umask 077 &&
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
      -out "$d/ca-key.pem" &&
    openssl req -new -x509 -key "$d/ca-key.pem" -out "$d/ca-cert.pem" \
      -days 30 -subj "/CN=nbdcache bench CA" \
      -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign" &&
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
      -out "$d/server-key.pem" &&
    openssl req -new -key "$d/server-key.pem" -subj "/CN=localhost" \
      -out "$d/server.csr" &&
    printf '%s\n' 'basicConstraints=critical,CA:FALSE' \
      'keyUsage=critical,digitalSignature' 'extendedKeyUsage=serverAuth' \
      'subjectAltName=DNS:localhost,IP:127.0.0.1' > "$d/server.ext" &&
    openssl x509 -req -in "$d/server.csr" -CA "$d/ca-cert.pem" \
      -CAkey "$d/ca-key.pem" -set_serial "0x$(openssl rand -hex 8)" \
      -days 30 -extfile "$d/server.ext" -out "$d/server-cert.pem" ) \
    > "$d/openssl.log" 2>&1 ||
    bench_die "making the TLS certificates failed: $(tail -n 3 "$d/openssl.log")"
  rm -f "$d/server.csr" "$d/server.ext"
}

# bench_fio_value JSON RW BS: IOPS for 4k (any bs below 1M), bytes/s for
# 1M, of the read or write side of fio's first (group-reported) job.
bench_fio_value () {
  "$python" - "$1" "$2" "$3" <<'EOF'
import json, sys
path, rw, bs = sys.argv[1:]
job = json.load(open(path))["jobs"][0]
side = job["write" if "write" in rw else "read"]
print(side["bw_bytes"] if bs == "1M" else side["iops"])
EOF
}

# bench_fio_latency JSON RW: "mean p50 p99" completion-to-completion
# latency in microseconds (fio's lat_ns; the run needs --lat_percentiles=1).
bench_fio_latency () {
  "$python" - "$1" "$2" <<'EOF'
import json, sys
path, rw = sys.argv[1:]
job = json.load(open(path))["jobs"][0]
lat = job["write" if "write" in rw else "read"]["lat_ns"]
pc = lat.get("percentile", {})
def us(v):
    return "%.1f" % (v / 1e3) if v is not None else "n/a"
print(us(lat["mean"]), us(pc.get("50.000000")), us(pc.get("99.000000")))
EOF
}

# bench_fmt VALUE UNIT: kIOPS (value in IOPS) or MB/s (value in bytes/s),
# one decimal (two below 10); "n/a" for nothing, "error" stays "error".
bench_fmt () {
  case $1 in
    error|'') printf '%s' "${1:-n/a}" ;;
    *) "$python" -c "import sys; v=float(sys.argv[1]); v=v/1e3 if sys.argv[2]=='kIOPS' else v/1e6; print('%.1f' % v if v >= 10 else '%.2f' % v)" "$1" "$2" ;;
  esac
}

# bench_ratio OURS PEER: "1.23x", or "n/a" when either is missing or failed.
bench_ratio () {
  case $1:$2 in
    error:*|*:error|:*|*:) printf 'n/a' ;;
    *) "$python" -c "import sys; a,b=map(float,sys.argv[1:]); print('%.2fx' % (a/b) if b else 'n/a')" "$1" "$2" ;;
  esac
}

# bench_plot SVG TITLE DATA NCOLS: grouped bars from DATA, a whitespace-
# separated file whose first line is "row" then NCOLS column names and
# NCOLS ratio-column names, and then one line per row: its label (with its
# unit), NCOLS values in that unit ("-" when missing) and NCOLS ratio
# labels ("-" for none).  The y axis is logarithmic: rows mix kIOPS and
# MB/s, and a 2 ms remote's flush row is 100x below a cache hit.
bench_plot () {
  local svg=$1 title=$2 data=$3 n=$4 rows ymin
  command -v gnuplot >/dev/null ||
    bench_die "gnuplot is not installed (apt-get install gnuplot-nox)"
  rows=$(($(wc -l < "$data") - 1))
  # The log axis starts below the smallest bar (gnuplot's own choice can
  # put it exactly at a bar's value, which then has no height).
  ymin=$(awk -v n="$n" 'NR > 1 { for (i = NF - 2 * n + 1; i <= NF - n; i++)
                            if ($i != "-" && $i > 0 && (m == "" || $i < m)) m = $i }
                        END { print (m == "" ? 0.1 : m / 2) }' "$data")
  gnuplot <<EOF || bench_die "gnuplot failed to draw $svg"
set terminal svg size $((200 + rows * (120 + 40 * n))),600 dynamic font "sans,11"
set output "$svg"
set title "$title" noenhanced
set datafile missing "-"
set key autotitle columnhead
set style fill solid 0.8 border -1
set logscale y
set yrange [$ymin:*]
set ylabel "kIOPS (4k rows) or MB/s (1M rows), log scale"
set xtics noenhanced nomirror scale 0 font "sans,10"
set bmargin 4
set key outside top center horizontal noenhanced
set grid ytics
n = $n
w = 0.8 / n
pos(i) = \$0 + (i - 2 - (n - 1) / 2.0) * w
set xrange [-0.6:$rows - 0.4]
set boxwidth w absolute
plot for [i=2:n+1] "$data" using (pos(i)):(column(i)) with boxes title columnhead(i), \\
     "$data" using 0:(NaN):xtic(1) notitle, \\
     for [i=2:n+1] "$data" using (pos(i)):(column(i)):(stringcolumn(i+n) eq "-" ? "" : stringcolumn(i+n)) \\
       with labels center offset 0,0.6 font "sans,8" notitle
EOF
  echo "$prog: plot written to $svg" >&2
}
