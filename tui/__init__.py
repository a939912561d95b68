"""brickwork.tui: the Textual operator app (`brickwork tui`).

`brickwork.tui.app.BrickworkTUI` takes the embedded API (`App`s by graph name and a
`RunStore`); `brickwork.tui.app.run_tui` builds those and runs it in the terminal. Textual is
imported only by those modules, so `import brickwork.tui` stays light.
"""
