#!/usr/bin/env bash
# Re-make the README's simulator screenshots from the shipped demo bundle (offscreen, 1080p),
# each on a fresh history database so what they show is the demo's own seeded households:
#   docs/sim-home.png     the home screen of the first viewer, budget overlay open
#   docs/sim-details.png  the details page of the first Continue-watching card
#   docs/sim-menu.png     the card menu on that card
# Run from the repository root after rebuilding demo/bundle:  bash docs/screenshots.sh
set -euo pipefail
cd "$(dirname "$0")/.."
TVREC=${TVREC:-.venv/bin/tvrec}
MEDIA=$([ -d ../shared/data/media/video ] && echo "--media ../shared/data/media/video" || true)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
shot() {  # shot NAME SCRIPT
  QT_QPA_PLATFORM=offscreen "$TVREC" sim --db "$tmp/$1.db" --resolution 1080p $MEDIA \
    --screenshot "docs/$1.png" --script "$2"
  echo "docs/$1.png"
}
shot sim-home "wait:3,info,wait:1"
shot sim-details "wait:2,ok,wait:1"
shot sim-menu "wait:2,menu,wait:1"
