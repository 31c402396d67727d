"""The fixed part of ``command.sh``: its options and the shell functions its steps call.

POSIX ``sh`` plus ``git``, ``sha256sum``, ``cmp``, ``diff`` and ``sed``. Every message
goes to stderr, so the command's own output is all that reaches stdout.
"""

from __future__ import annotations

__all__ = ["OPTIONS", "helpers"]

OPTIONS = """\
# Options:
#   --secrets FILE   set the MLTRAIL_SECRET_<n> values from FILE (lines NAME='value')
#   --in-place       check the commit out in your repository instead of a copy in src/
#                    (refused when it has uncommitted changes; says how to get back)
#   --apply-diff     apply the run's uncommitted changes (code.diff) to the copy
#   --force-config   replace a config file that differs from the run's, after a backup
#   --repo DIR       the git repository that holds the commit (a clone elsewhere)"""

_HELPERS = r"""
shown() {  # recorded names pass through: control characters shown as '?', so a
  # name cannot move the cursor, retitle the terminal or reach the clipboard
  LC_ALL=C tr '\000-\010\013-\037\177' '?'
}
say() { printf '%s\n' "$*" | shown >&2; }
die() { say "command.sh: $*"; exit 1; }
q() {  # a word as the shell reads it back, quoted only when needed (as shlex.quote)
  case $1 in
    '' | *[!A-Za-z0-9_@%+=:,./-]*) printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\"'\"'/g")" ;;
    *) printf '%s' "$1" ;;
  esac
}
notes=
note() { notes="$notes$*
"; }
trap '[ -z "$notes" ] || printf "%s" "$notes" | shown >&2' EXIT

in_place=0 apply_diff=0 force_config=0
while [ $# -gt 0 ]; do
  case $1 in
    --in-place) in_place=1 ;;
    --apply-diff) apply_diff=1 ;;
    --force-config) force_config=1 ;;
    --secrets | --repo)
      [ $# -ge 2 ] || die "$1 needs a value"
      if [ "$1" = --repo ]; then
        repo=$(cd "$2" 2>/dev/null && pwd) || die "--repo $2: no such folder"
      else
        case $2 in */*) secrets=$2 ;; *) secrets=./$2 ;; esac
        [ -f "$secrets" ] || die "--secrets $2: no such file"
        set -a; . "$secrets"; set +a
      fi
      shift ;;
    -h | --help) sed -n '2,/^set -eu/p' "$0" | sed '$d'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
  shift
done

missing=
need() {  # VARIABLE WHAT: a value redacted when recorded, to be supplied
  eval "value=\${$1:-}"
  [ -n "$value" ] || missing="$missing
  $1: $2"
}
check_needed() {
  [ -z "$missing" ] || die "set these values, redacted when the run was recorded \
(or pass --secrets FILE):$missing"
}

sha256() { sha256sum < "$1" | cut -d' ' -f1; }

fill_config() {  # NAME SHA256 VARIABLE...: the config from its pieces and the values
  name=$1 sum=$2; shift 2
  was=$(umask); umask 077
  cat "$here/$name.parts/1" > "$here/$name.tmp"
  n=1
  for var in "$@"; do
    eval "printf '%s' \"\$$var\"" >> "$here/$name.tmp"
    n=$((n + 1))
    cat "$here/$name.parts/$n" >> "$here/$name.tmp"
  done
  umask "$was"
  if [ "$sum" = keyed ]; then
    check_keyed "$name" "$@"
  elif [ -n "$sum" ] && [ "$(sha256 "$here/$name.tmp")" != "$sum" ]; then
    rm -f "$here/$name.tmp"
    die "$name filled in with $* does not match the file the run used \
(its SHA-256): one of the values is wrong. \`mltrail reproduce $run --out DIR\` \
with them set says which."
  fi
  mv -f "$here/$name.tmp" "$here/$name"
}

check_keyed() {  # NAME VARIABLE...: the filled-in file against the run's keyed
  # commitment of the original (only the ledger's commitment key can tell)
  name=$1; shift
  if ! command -v mltrail > /dev/null 2>&1 || [ ! -d "$ledger_home" ]; then
    say "command.sh: cannot check $name filled in with $*: mltrail or the ledger \
home $ledger_home is not here (the run recorded the file only as a keyed commitment)"
    return 0
  fi
  set +e
  MLTRAIL_HOME="$ledger_home" mltrail secrets check --run "$run" \
    --file "$here/$name.tmp" > /dev/null 2>&1
  rc=$?
  set -e
  case $rc in
    0) ;;
    1) rm -f "$here/$name.tmp"
       die "$name filled in with $* does not match the file the run used (its \
keyed commitment): one of the values is wrong. \`mltrail reproduce $run --out DIR\` \
with them set says which." ;;
    *) say "command.sh: cannot check $name filled in with $*: the ledger's \
commitment key is not at hand (\`mltrail secrets check\` exited $rc)" ;;
  esac
}

git_ok() { git -C "$repo" rev-parse --git-dir > /dev/null 2>&1 \
  || die "no git repository at $repo: pass --repo DIR (a clone that holds $commit)"
  git -C "$repo" cat-file -e "$commit^{commit}" 2> /dev/null \
  || die "commit $commit is not in $repo: fetch it, or pass --repo DIR"
}

check_out_in_place() {
  [ "$apply_diff" = 0 ] || die "--apply-diff applies the run's changes to a copy \
only: leave out --in-place"
  git_ok
  [ -z "$(git -C "$repo" status --porcelain --untracked-files=no)" ] \
  || die "uncommitted changes in $repo: commit or stash them first, or leave out \
--in-place (the code is then checked out into a copy)"
  was_branch=$(git -C "$repo" symbolic-ref -q --short HEAD || true)
  was_commit=$(git -C "$repo" rev-parse -q --verify HEAD || true)
  tree=$repo fresh=0
  if [ "$was_commit" = "$commit" ]; then
    say "code: $repo is at commit $commit already"
    return 0
  fi
  git -C "$repo" checkout --quiet --detach "$commit" \
  || die "git could not check out $commit in $repo (see above)"
  if [ -n "$was_branch" ]; then
    say "checked out commit $commit in $repo (detached HEAD); it was on branch $was_branch"
    note "to get back: git -C $(q "$repo") switch $(q "$was_branch")"
  else
    say "checked out commit $commit in $repo (detached HEAD); it was at commit $was_commit"
    note "to get back: git -C $(q "$repo") checkout --quiet --detach $was_commit"
  fi
}

check_out_copy() {
  tree=$here/src fresh=0
  if [ -e "$tree" ]; then
    [ "$(git -C "$tree" rev-parse -q --verify HEAD 2> /dev/null || true)" = "$commit" ] \
    || die "$tree is there and is not a checkout of $commit: remove it first"
    say "code: $tree (commit $commit), made by an earlier run of command.sh"
  else
    git_ok
    git -C "$repo" worktree add --quiet --detach "$tree" "$commit" \
    || die "git could not check out $commit into $tree (see above)"
    fresh=1
    say "code: commit $commit checked out into $tree, a git worktree of $repo" \
      "(your checkout is untouched)"
  fi
  note "to remove the copy: git -C $(q "$repo") worktree remove --force $(q "$tree")"
  if [ "$apply_diff" = 1 ]; then
    [ -n "$diff_file" ] || die "--apply-diff: no usable diff of the run's changes (see README.md)"
    [ "$fresh" = 1 ] || die "--apply-diff: the diff goes only into a new copy; remove $tree first"
    git -C "$tree" apply --whitespace=nowarn "$here/$diff_file" \
    || die "git could not apply $diff_file to the copy"
    say "code: the run's uncommitted changes ($diff_file) applied to the copy"
  elif [ -n "$diff_file" ]; then
    say "code: the run had uncommitted changes; not applied" \
      "(--apply-diff applies $diff_file to the copy)"
  fi
}

linked_in_copy() {  # PATH under $tree/: the first link on the way to it, if any
  p=$1
  while [ "$p" != "$tree" ] && [ "$p" != / ] && [ "$p" != . ]; do
    if [ -L "$p" ]; then printf '%s' "$p"; return 0; fi
    p=$(dirname "$p")
  done
  return 1
}

link_data() {  # PATH: data the run read from inside the repository, not in the commit
  [ "$in_place" = 0 ] && [ ! -e "$tree/$1" ] && [ ! -L "$tree/$1" ] \
  && [ -e "$repo/$1" ] || return 0
  if link=$(linked_in_copy "$tree/$1"); then
    say "data $1: not linked: $link is a link in the checked-out commit \
(a link there is never followed to write)"
    return 0
  fi
  mkdir -p "$(dirname "$tree/$1")"
  ln -s "$repo/$1" "$tree/$1"
  say "data $1: not in the commit; linked from $repo/$1"
}

place_config() {  # NAME TARGET IN_TREE: put the run's config where the program reads it
  if [ "$3" = 1 ] && link=$(linked_in_copy "$2"); then
    die "$2: not written: $link is a link in the checked-out commit, and a config \
is never written through one (it could lead anywhere). Put the run's config ($1) \
there yourself if that is where it belongs."
  fi
  if [ ! -e "$2" ]; then
    mkdir -p "$(dirname "$2")"
    cp "$here/$1" "$2"
    say "config $2: written as the run had it"
  elif cmp -s "$here/$1" "$2"; then
    return 0
  elif [ "$3" = 1 ] && [ "$fresh" = 1 ]; then
    cp "$here/$1" "$2"
    say "config $2: the copy now has the version the run used, not the commit's"
  elif [ "$force_config" = 1 ]; then
    backup=$2.mltrail-backup-$(date +%Y%m%dT%H%M%S)
    [ ! -e "$backup" ] || backup=$backup-$$
    cp -p "$2" "$backup"
    cp "$here/$1" "$2"
    say "config $2: replaced by the version the run used; backup: $backup"
  else
    say "command.sh: $2 differs from the config file the run used ($1)."
    say "Keys on the lines that differ (values not shown):"
    diff "$here/$1" "$2" | sed -n 's/^[<>][[:space:]]*\([^:=[:space:]][^:=]*\)[:=].*/  \1/p' \
      | sed 's/[[:space:]]*$//' | sort -u | shown >&2 || true
    die "not overwritten. Run with --force-config to replace it (a backup is made \
first), or make it the same yourself."
  fi
}

check_config() {  # TARGET SHA256: a config not in the ledger must be there as it was
  [ -f "$1" ] && [ "$(sha256 "$1")" = "$2" ] \
  || die "$1 is not the config file the run used, and the ledger does not hold it"
}
"""


def helpers() -> str:
    """The shell functions and option handling, placed after ``here=``."""
    return _HELPERS.strip("\n")
