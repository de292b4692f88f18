-- field(flat, name): the value of field `name` in a flat {name, value, ...} list of a
-- stream entry's fields, or nil.
local function field(flat, name)
  for i = 1, #flat, 2 do if flat[i] == name then return flat[i + 1] end end
  return nil
end
