package main

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

// bashCompletion asks the binary itself for completions (urfave/cli's
// --generate-bash-completion), so it stays right as commands change.
const bashCompletion = `_diplip_complete() {
  local cur words
  COMPREPLY=()
  cur="${COMP_WORDS[COMP_CWORD]}"
  if [[ "$cur" == "-"* ]]; then
    words=$("${COMP_WORDS[@]:0:$COMP_CWORD}" "$cur" --generate-bash-completion 2>/dev/null)
  else
    words=$("${COMP_WORDS[@]:0:$COMP_CWORD}" --generate-bash-completion 2>/dev/null)
  fi
  COMPREPLY=($(compgen -W "$words" -- "$cur"))
  return 0
}
complete -o bashdefault -o default -o nospace -F _diplip_complete diplip
`

func completionCommand() *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print the bash completion script",
		UsageText: "diplip completion bash\n\nExample (add to ~/.bashrc):\n   source <(diplip completion bash)",
		Action: func(c *cli.Context) error {
			if c.Args().First() != "bash" {
				return cli.Exit("want: diplip completion bash (bash is the shell supported)", exitUsage)
			}
			_, err := fmt.Fprint(c.App.Writer, bashCompletion)
			return err
		},
	}
}
