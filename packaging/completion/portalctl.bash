# bash completion for portalctl(8): subcommands, options, and snapshot names
# asked from the running daemon (the socket given on the line, or the default).

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

_portalctl() {
  local cur prev words cword
  _init_completion || return

  local global_opts="--socket --json --timeout --help --version"
  case $prev in
    --socket) _filedir; return ;;
    --nbd-unix) _filedir; return ;;
    --timeout | --nbd | --export | --connections | --io-timeout | --keep-last | --keep-hourly | --keep-daily | --keep-weekly | --prefix) return ;;
  esac

  # The first two non-option words: command and snapshot subcommand.
  local cmd= sub= i w
  for (( i = 1; i < cword; i++ )); do
    w=${words[i]}
    case $w in
      --socket | --timeout) (( i++ )); continue ;;
      -*) continue ;;
    esac
    if [[ -z $cmd ]]; then cmd=$w; elif [[ -z $sub ]]; then sub=$w; fi
  done

  if [[ -z $cmd ]]; then
    if [[ $cur == -* ]]; then
      COMPREPLY=($(compgen -W "$global_opts" -- "$cur"))
    else
      COMPREPLY=($(compgen -W "status snapshot mount umount" -- "$cur"))
    fi
    return
  fi
  case $cmd in
    mount)
      if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "--nbd --nbd-unix --export --live --foreground --connections --io-timeout" -- "$cur"))
      else
        _filedir -d
      fi
      return ;;
    umount) _filedir -d; return ;;
    snapshot) ;;
    *) return ;;
  esac

  if [[ -z $sub ]]; then
    COMPREPLY=($(compgen -W "create list show delete restore prune" -- "$cur"))
    return
  fi
  case $sub in
    show | delete)
      COMPREPLY=($(compgen -W "$(_portalctl_snapshot_names)" -- "$cur")) ;;
    restore)
      if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "--discard-current" -- "$cur"))
      else
        COMPREPLY=($(compgen -W "$(_portalctl_snapshot_names)" -- "$cur"))
      fi ;;
    prune)
      COMPREPLY=($(compgen -W "--keep-last --keep-hourly --keep-daily --keep-weekly --prefix --dry-run" -- "$cur")) ;;
  esac
} &&
  complete -F _portalctl portalctl
