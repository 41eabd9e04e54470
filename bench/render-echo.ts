/**
 * The floor of bench/render's keypress-to-frame figure: a program that redraws a two-row list the
 * moment j or k arrives, with nothing else to do. What it measures is tmux and the polling, not an
 * application. q quits.
 */
const rows = [4242, 4243];
let selected = 0;

function draw(): void {
  const lines = rows.map((pid, index) => `${index === selected ? '>' : ' '} ${pid}`);
  process.stdout.write(`\u001b[H\u001b[2J${lines.join('\r\n')}\r\n`);
}

process.stdin.setRawMode(true);
process.stdin.setEncoding('utf8');
process.stdin.on('data', (data: string) => {
  for (const key of data) {
    if (key === 'q') process.exit(0);
    if (key === 'j') selected = Math.min(selected + 1, rows.length - 1);
    if (key === 'k') selected = Math.max(selected - 1, 0);
  }
  draw();
});
draw();
