import { assert } from "../../core/assert.js";

/** One column of an `unnest(...)` row source: name, element type, and one value per row. */
export type UnnestColumn = readonly [name: string, type: string, values: readonly unknown[]];

/** How {@link SqlParams.unnest} passes rows; see the constructor of {@link SqlParams}. */
export type SqlRowsMode = "arrays" | "json" | "values";

/**
 * Collects positional parameters while a statement is built, so that fragments can be composed
 * without counting `$n` by hand.
 *
 * @internal
 */
export class SqlParams {
  /** The values, in `$1`, `$2`, … order. */
  readonly values: unknown[] = [];
  /** Whether a one-row source goes as a `VALUES` list; other sources go as `#manyRows` says. */
  readonly #oneRowAsValues: boolean;
  readonly #manyRows: "arrays" | "json";

  /**
   * @param rows - how {@link SqlParams.unnest} passes rows: one array per column (`arrays`, any
   *   dialect), one JSON document (`json`, PostgreSQL only: `json_to_recordset` with a column
   *   definition list, which CockroachDB lacks), or one parameter per value (`values`: a `VALUES`
   *   list, any dialect). JSON is one C parse of one parameter instead of one array literal and
   *   one set-returning call per column. `VALUES` tells the planner how many rows there are (it
   *   takes a set-returning function for 100), so a one-row source is joined by index lookups
   *   rather than by hashing. It applies to sources of exactly one row: a source of more rows
   *   goes as `manyRows` says, so that neither the number of parameters nor the number of
   *   distinct statement texts grows with the rows.
   * @param manyRows - with `values`, how a source of other than one row passes its rows
   */
  constructor(rows: SqlRowsMode = "arrays", manyRows: "arrays" | "json" = "arrays") {
    this.#oneRowAsValues = rows === "values";
    this.#manyRows = rows === "values" ? manyRows : rows;
  }

  /**
   * Adds a value.
   *
   * @param value - the value
   * @param type - its SQL type, used as a cast so that every parameter's type is explicit
   * @returns the placeholder, e.g. `$3::text`
   */
  add(value: unknown, type: string): string {
    this.values.push(value);
    return `$${this.values.length}::${type}`;
  }

  /**
   * A row source of many rows, one array parameter per column: `unnest($1::text[], …) AS u(a, …)`
   * (or one JSON parameter: `json_to_recordset($1::json) AS u(a text, …)`).
   * One statement then writes rows for every commit of a batch. JSON travels as `text` and is
   * cast to `jsonb` by the caller, because CockroachDB has no arrays of JSONB before 23.1.
   *
   * @param alias - the name of the row source
   * @param columns - the columns, all with the same number of values
   * @returns the `FROM` item
   */
  unnest(alias: string, columns: readonly UnnestColumn[]): string {
    assert(columns.length > 0, "unnest needs a column");
    const rows = columns[0]![2].length;
    for (const [name, , values] of columns) assert(values.length === rows, `column ${name} has ${rows} values`);
    if (this.#oneRowAsValues && rows === 1) {
      const row = columns.map(([, type, values]) => this.add(values[0] ?? null, type));
      return `(VALUES (${row.join(", ")})) AS ${alias}(${columns.map(([name]) => name).join(", ")})`;
    }
    if (this.#manyRows === "json") {
      // JSON has no NaN or Infinity (JSON.stringify writes null): refuse them as an array literal would.
      for (const [name, type, values] of columns) {
        if (type !== "int8") continue;
        for (const value of values)
          assert(value === null || value === undefined || Number.isSafeInteger(value), `column ${name} holds integers`);
      }
      const objects: Array<Record<string, unknown>> = [];
      for (let r = 0; r < rows; r++) {
        const row: Record<string, unknown> = {};
        for (const [name, , values] of columns) row[name] = values[r];
        objects.push(row);
      }
      const param = this.add(JSON.stringify(objects), "json");
      return `json_to_recordset(${param}) AS ${alias}(${columns.map(([name, type]) => `${name} ${type}`).join(", ")})`;
    }
    const arrays = columns.map(([, type, values]) => this.add(values, `${type}[]`));
    return `unnest(${arrays.join(", ")}) AS ${alias}(${columns.map(([name]) => name).join(", ")})`;
  }
}
