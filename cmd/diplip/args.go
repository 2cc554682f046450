package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
)

// interspersed moves the flags that follow a command's positional arguments in front of
// them, so that `diplip fn build DIR -t REF` works as the examples show: urfave/cli v2
// stops parsing flags at the first positional argument. Flags that take a value keep
// it; "--" ends flag parsing as usual.
func interspersed(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	out := []string{args[0]}
	cmds, flags := app.Commands, app.Flags
	i := 1
	// Walk down the command path: leading words that name subcommands.
	for i < len(args) {
		a := args[i]
		if strings.HasPrefix(a, "-") {
			break
		}
		j := slices.IndexFunc(cmds, func(c *cli.Command) bool { return c.HasName(a) })
		if j < 0 {
			break
		}
		out = append(out, a)
		flags = cmds[j].Flags
		cmds = cmds[j].Subcommands
		i++
	}
	var fl, pos []string
	for ; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i:]...)
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			pos = append(pos, a)
			continue
		}
		fl = append(fl, a)
		if !strings.Contains(a, "=") && takesValue(flags, strings.TrimLeft(a, "-")) && i+1 < len(args) {
			i++
			fl = append(fl, args[i])
		}
	}
	return append(append(out, fl...), pos...)
}

// takesValue reports whether the flag called name expects a value (everything but a
// boolean flag; unknown flags are left for the parser to report).
func takesValue(flags []cli.Flag, name string) bool {
	for _, f := range flags {
		if slices.Contains(f.Names(), name) {
			_, isBool := f.(*cli.BoolFlag)
			return !isBool
		}
	}
	return false
}

// oneArg reads a command's one argument; what names it in the error.
func oneArg(c *cli.Context, what string) (string, error) {
	if c.NArg() != 1 {
		return "", cli.Exit(fmt.Sprintf("want exactly one %s, got %d arguments (see: %s --help)", what, c.NArg(), c.Command.HelpName), exitUsage)
	}
	return c.Args().First(), nil
}
