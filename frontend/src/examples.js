// The examples menu: a few everyday programs, then one per sandbox limit so
// a visitor can watch the sandbox hold. `limits` use API units.

export const EXAMPLES = [
  {
    id: 'hello',
    title: 'Hello, world',
    code: `import sys

print("Hello from runbox!")
print("Python", sys.version.split()[0], "on", sys.platform)
`,
  },
  {
    id: 'loop',
    title: 'A loop (FizzBuzz)',
    code: `for n in range(1, 21):
    if n % 15 == 0:
        print("FizzBuzz")
    elif n % 3 == 0:
        print("Fizz")
    elif n % 5 == 0:
        print("Buzz")
    else:
        print(n)
`,
  },
  {
    id: 'exception',
    title: 'An exception with a traceback',
    code: `def parse_age(text):
    return int(text)


ages = ["42", "7", "forty"]
for age in ages:
    print(age, "->", parse_age(age))
`,
  },
  {
    id: 'stdin',
    title: 'Reading stdin and args',
    code: `import sys

print("args:", sys.argv[1:])
numbers = [int(line) for line in sys.stdin if line.strip()]
print(f"read {len(numbers)} numbers from stdin; sum = {sum(numbers)}")
`,
    stdin: '3\n4\n5\n',
    args: '--verbose "two words"',
  },
  {
    id: 'timeout',
    group: 'limits',
    title: 'Infinite loop → timeout',
    code: `# Never ends; the sandbox stops it at the time limit (3 s here).
import time

tick = 0
while True:
    tick += 1
    print("still going:", tick)
    time.sleep(0.5)
`,
    limits: { timeout_ms: 3000 },
  },
  {
    id: 'fuel',
    group: 'limits',
    title: 'Busy loop → fuel exhausted',
    code: `# Pure computation forever: the CPU budget ("fuel") runs out.
n = 0
while True:
    n += 1
`,
  },
  {
    id: 'memory',
    group: 'limits',
    title: 'Memory bomb → memory exceeded',
    code: `# Grab memory 16 MiB at a time until the sandbox says no.
blocks = []
while True:
    blocks.append(bytearray(16 * 1024 * 1024))
    print(f"holding {len(blocks) * 16} MiB")
`,
  },
  {
    id: 'flood',
    group: 'limits',
    title: 'Output flood → truncated',
    code: `# About 1 MB of output; the sandbox keeps only the first part.
for i in range(20_000):
    print(f"line {i}: all work and no play makes Jack a dull boy")
`,
  },
];
