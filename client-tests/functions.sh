# functions.sh — shared shell helpers for the client tests.  Source it.
#
# WHAT: runs a command against a freshly started server of either kind,
# the same way for both, so every client test covers nbdcached AND
# nbdkit + the nbdcache plugin.
# HOW: both servers run in "captive" mode: the server listens on a private
# Unix socket (or an ephemeral TCP port), runs the command with $uri,
# $unixsocket, $port and $export set (exported into its environment), and
# exits when the command exits, with the command's exit status.  No fixed
# ports, no sleeps: the socket is listening before the command starts.
#
# Usage:
#   . "$srcdir/functions.sh"
#   requires nbdinfo                 # exit 77 if a tool is truly absent
#   tmp=$(make_tmpdir)               # removed at exit
#   write_config "$tmp/c.conf" "$tmp/disk.img" 64M [extra export lines…]
#   run_server nbdcached "$tmp/c.conf" disk -- nbdinfo '$uri'
#   run_server plugin    "$tmp/c.conf" disk -- nbdinfo '$uri'
#   for_each_server CONF EXPORT -- CMD…   # both kinds, fails if either fails
#
# Environment from the build: $top_builddir, $top_srcdir, $srcdir.
# NBDCACHED and PLUGIN may be overridden (e.g. a sanitizer build).
