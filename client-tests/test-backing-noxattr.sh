#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# test-backing-noxattr.sh — a backing file on a real filesystem that keeps
# no user extended attributes is known by device and inode: a rename
# within the filesystem keeps its dirty data, another file at its path is
# refused.
#
# WHAT: a ramfs is mounted (ramfs has no xattr handlers: setting
# user.nbdcache.id fails with EOPNOTSUPP; checked first, so the test
# cannot pass on a filesystem that has them).  For each server kind, a
# writeback export (writeback_percent = 100: writes stay dirty) backed by
# a file on it, the cache elsewhere:
#   1. write 0x5a at [0, 1M); stop (the file still reads zeros in part of
#      it: that data is only in the cache); the
#      log says the file has no user.nbdcache.id because its filesystem
#      keeps no user extended attributes; nbdcache show --json records
#      identity "file-inode" with backing_id "DEV:INO" of that file;
#   2. rename it within the ramfs (the config edited): [0, 1M) reads 0x5a,
#      and the log says the cache knew it by its inode and device;
#   3. another file (a copy, so the same content, another inode) at that
#      path: the start is refused ("not the backing store that cache …
#      holds data for", naming nbdcache forget), the server never serves;
#   4. the original back: 0x5a.
# WHY (issue 12 §2): the fallback identity (device, inode, birth time)
# had only been tested on the matching logic, never on a filesystem that
# refuses the extended attribute.
# The ramfs is unmounted at exit, even on failure.
set -e
. "${srcdir:-.}/functions.sh"
requires qemu-io truncate mount umount
NBDCACHE=$(abspath "${NBDCACHE:-$top_builddir/admin/nbdcache}")
[ "$(id -u)" = 0 ] || skip "not root: cannot mount a ramfs"

tmp=$(make_tmpdir)
mnt=$tmp/mnt
mkdir "$mnt"
mount -t ramfs -o mode=0755 nbdcache-ct "$mnt" ||
  skip "cannot mount a ramfs here"
on_exit "umount '$mnt'"

# The filesystem must really refuse user xattrs.
truncate -s 4096 "$mnt/probe"
if "$PYTHON" -c '
import errno, os, sys
try:
    os.setxattr(sys.argv[1], "user.nbdcache.id", b"0123456789abcdef")
except OSError as e:
    sys.exit(0 if e.errno == errno.EOPNOTSUPP else 2)
sys.exit(1)' "$mnt/probe"; then
  :
else
  die "ramfs accepted (or failed oddly on) a user xattr: status $?"
fi
rm "$mnt/probe"

# nbdkit shows the plugin's info messages only with -v.
verbose="plugin:-v plugin:-D plugin:nbdkit.backend.datapath=0"
failed=""
for kind in $(server_kinds); do
  dir=$tmp/$kind
  fs=$mnt/$kind
  mkdir -p "$dir" "$fs"
  echo "==== $kind ====" >&2
  truncate -s 8M "$fs/disk.img"
  write_config "$dir/c.conf" "$fs/disk.img" - "cache = ssd" \
    "mode = writeback" "writeback_percent = 100"
  cat >> "$dir/c.conf" <<EOC

[cache ssd]
path = $dir/cache.img
size = 64M
create = yes
bucket_size = 64K
EOC

  # 1. Dirty data, known by device and inode.
  run_server "$kind" "$dir/c.conf" disk $verbose -- \
    'qemu-io -f raw -c "write -P 0x5a 0 1M" "$uri"' 2> "$dir/log-write" ||
    { cat "$dir/log-write" >&2; failed="$failed $kind:write"; continue; }
  cat "$dir/log-write" >&2
  still_dirty "$fs/disk.img" || failed="$failed $kind:not-dirty"
  grep -q "has no user.nbdcache.id (its filesystem keeps no user extended attributes)" \
    "$dir/log-write" || failed="$failed $kind:no-xattr-message"
  want="$(stat -c %D "$fs/disk.img" | sed 's/^0*//'):$(stat -c %i "$fs/disk.img")"
  "$NBDCACHE" show --json "$dir/cache.img" > "$dir/show" || true
  grep -q "\"identity\": \"file-inode\", \"backing_id\": \"$want\(:[0-9.]*\)\?\"" \
    "$dir/show" || {
    grep '"identity"' "$dir/show" >&2
    echo "$0: FAIL: [$kind] want identity file-inode $want" >&2
    failed="$failed $kind:identity"
  }

  # 2. Renamed within the filesystem.
  ino=$(stat -c %i "$fs/disk.img")
  mv "$fs/disk.img" "$fs/renamed.img"
  sed -i "s|^backing = .*|backing = $fs/renamed.img|" "$dir/c.conf"
  run_server "$kind" "$dir/c.conf" disk $verbose -- \
    'qemu-io -f raw -c "read -P 0x5a 0 1M" "$uri"' 2> "$dir/log-renamed" ||
    failed="$failed $kind:renamed"
  cat "$dir/log-renamed" >&2
  grep -q "the same store by inode $ino on device 0x[0-9a-f]* (no user.nbdcache.id): cached data kept" \
    "$dir/log-renamed" || failed="$failed $kind:renamed-message"

  # 3. Another file at the same path.
  mv "$fs/renamed.img" "$fs/original.img"
  cp "$fs/original.img" "$fs/renamed.img"
  expect_backing_refused "$kind" "$dir/c.conf" disk "$dir/log-other" ||
    failed="$failed $kind:other-file-not-refused"

  # 4. The original back.
  mv "$fs/original.img" "$fs/renamed.img"
  run_server "$kind" "$dir/c.conf" disk -- \
    'qemu-io -f raw -c "read -P 0x5a 0 1M" "$uri"' ||
    failed="$failed $kind:original-back"
done

[ -z "$failed" ] || die "failed:$failed"
echo "$0: PASS"
