struct Identity {
  1: string name,
  2: i64 pid,
}
