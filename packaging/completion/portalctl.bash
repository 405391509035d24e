# bash completion for portalctl(8): subcommands, options, and snapshot names
# asked from the running daemon (the socket given on the line, or the default).
# Plain bash: it needs nothing from the bash-completion package (which only
# loads it on demand when installed).

_portalctl_snapshot_names() {
  local sock=() i
  for (( i = 1; i < ${#COMP_WORDS[@]} - 1; i++ )); do
    if [[ ${COMP_WORDS[i]} == --socket ]]; then sock=(--socket "${COMP_WORDS[i + 1]}"); fi
  done
  # `snapshot list --json` is {"snapshots": [{"name": ...}, ...]}: pick the names
  # without needing jq.
  portalctl "${sock[@]}" --json --timeout 2 snapshot list 2>/dev/null |
    grep -oE '"name" *: *"[A-Za-z0-9._-]+"' | sed -E 's/.*"([^"]+)"$/\1/'
}

# _portalctl_words LIST: COMPREPLY = the words of LIST that start with $cur.
_portalctl_words() {
  local w
  COMPREPLY=()
  for w in $1; do
    [[ $w == "$cur"* ]] && COMPREPLY+=("$w")
  done
}

# _portalctl_paths [-d]: files (or directories) that start with $cur.
_portalctl_paths() {
  local IFS=$'\n'
  if [[ $1 == -d ]]; then
    COMPREPLY=($(compgen -d -- "$cur"))
  else
    COMPREPLY=($(compgen -f -- "$cur"))
  fi
  compopt -o filenames 2>/dev/null
}

_portalctl() {
  local cur=${COMP_WORDS[COMP_CWORD]} prev=
  (( COMP_CWORD > 0 )) && prev=${COMP_WORDS[COMP_CWORD - 1]}
  COMPREPLY=()

  local global_opts="--socket --json --timeout --help --version"
  case $prev in
    --socket | --nbd-unix) _portalctl_paths; return ;;
    --timeout | --nbd | --export | --connections | --io-timeout | --keep-last | --keep-hourly | --keep-daily | --keep-weekly | --prefix) return ;;
  esac

  # The first two non-option words: command and snapshot subcommand.
  local cmd= sub= i w
  for (( i = 1; i < COMP_CWORD; i++ )); do
    w=${COMP_WORDS[i]}
    case $w in
      --socket | --timeout) (( i++ )); continue ;;
      -*) continue ;;
    esac
    if [[ -z $cmd ]]; then cmd=$w; elif [[ -z $sub ]]; then sub=$w; fi
  done

  if [[ -z $cmd ]]; then
    if [[ $cur == -* ]]; then
      _portalctl_words "$global_opts"
    else
      _portalctl_words "status snapshot gc checkpoint mount umount"
    fi
    return
  fi
  case $cmd in
    mount)
      if [[ $cur == -* ]]; then
        _portalctl_words "--nbd --nbd-unix --export --live --foreground --connections --io-timeout"
      else
        _portalctl_paths -d
      fi
      return ;;
    umount) _portalctl_paths -d; return ;;
    gc) _portalctl_words "--wait"; return ;;
    snapshot) ;;
    *) return ;;
  esac

  if [[ -z $sub ]]; then
    _portalctl_words "create list show delete restore prune"
    return
  fi
  case $sub in
    show | delete)
      _portalctl_words "$(_portalctl_snapshot_names)" ;;
    restore)
      if [[ $cur == -* ]]; then
        _portalctl_words "--discard-current"
      else
        _portalctl_words "$(_portalctl_snapshot_names)"
      fi ;;
    prune)
      _portalctl_words "--keep-last --keep-hourly --keep-daily --keep-weekly --prefix --dry-run" ;;
  esac
} &&
  complete -F _portalctl portalctl
